package saml

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"

	"github.com/fedbroker/fedbroker/connectors"
)

func TestValidate(t *testing.T) {
	md := idpMetadataXML(t, idpKey())
	certFile, keyFile := writeKeyPair(t, spKey())
	_, otherKeyFile := writeKeyPair(t, otherKey())
	expiredMD := idpMetadataXMLAt(t, idpKey(), time.Now().Add(-3*time.Hour), time.Hour)
	mdFile := filepath.Join(t.TempDir(), "idp.xml")
	if err := os.WriteFile(mdFile, []byte(md), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  Config
		want []string // paths with a problem
	}{
		{"inline metadata", Config{IDPMetadataXML: md}, nil},
		{"metadata file", Config{IDPMetadataFile: mdFile}, nil},
		{"metadata url", Config{IDPMetadataURL: "https://idp.test/metadata"}, nil},
		{"everything set", Config{
			IDPMetadataXML: md, EntityID: "urn:acme:broker", MetadataRefresh: time.Hour,
			SPCertificateFile: certFile, SPKeyFile: keyFile, RequireSigned: SignedBoth,
			AllowedSkew: 5 * time.Minute, Binding: BindingPOST,
			IDPInitiated: &IDPInitiated{ClientID: "app", RedirectURI: "https://app.test/cb", Scopes: []string{"openid", "email"}},
			NameIDFormat: "transient", SubjectAttribute: "uid", MaxResponseBytes: 1 << 20,
			MetadataSigningCertificateFile: certFile, MetadataSigningKeyFile: keyFile,
		}, nil},
		{"no metadata", Config{}, []string{"idp_metadata_url"}},
		{"two metadata sources", Config{IDPMetadataXML: md, IDPMetadataURL: "https://idp.test/metadata"}, []string{"idp_metadata_url"}},
		{"http metadata url", Config{IDPMetadataURL: "http://idp.test/metadata"}, []string{"idp_metadata_url"}},
		{"bad inline metadata", Config{IDPMetadataXML: "<nope/>"}, []string{"idp_metadata_xml"}},
		{"missing metadata file", Config{IDPMetadataFile: filepath.Join(t.TempDir(), "missing.xml")}, []string{"idp_metadata_file"}},
		{"every field wrong", Config{
			IDPMetadataXML: md, EntityID: "has space", MetadataRefresh: time.Second,
			SPCertificateFile: certFile, RequireSigned: "maybe", AllowedSkew: 6 * time.Minute,
			Binding: "artifact", NameIDFormat: "bogus", MaxResponseBytes: 10,
		}, []string{"allowed_skew", "binding", "entity_id", "max_response_bytes", "metadata_refresh", "nameid_format", "require_signed", "sp_key_file"}},
		{"key does not match certificate", Config{IDPMetadataXML: md, SPCertificateFile: certFile, SPKeyFile: otherKeyFile}, []string{"sp_key_file"}},
		{"transient without subject attribute", Config{IDPMetadataXML: md, NameIDFormat: "transient"}, []string{"subject_attribute"}},
		{"negative skew", Config{IDPMetadataXML: md, AllowedSkew: -time.Second}, []string{"allowed_skew"}},
		{"http metadata url on loopback", Config{IDPMetadataURL: "http://127.0.0.1:8080/metadata"}, nil},
		{"http metadata url on 127.0.0.0/8", Config{IDPMetadataURL: "http://127.3.4.5/metadata"}, nil},
		{"http metadata url on ::1", Config{IDPMetadataURL: "http://[::1]:8080/metadata"}, nil},
		{"http metadata url on localhost", Config{IDPMetadataURL: "http://LocalHost:8080/metadata"}, nil},
		{"http metadata url on a name ending in localhost", Config{IDPMetadataURL: "http://evil-localhost.test/metadata"}, []string{"idp_metadata_url"}},
		{"http metadata url on 128.0.0.1", Config{IDPMetadataURL: "http://128.0.0.1/metadata"}, []string{"idp_metadata_url"}},
		{"ftp metadata url", Config{IDPMetadataURL: "ftp://idp.test/metadata"}, []string{"idp_metadata_url"}},
		{"relative metadata url", Config{IDPMetadataURL: "/metadata"}, []string{"idp_metadata_url"}},
		{"allow_idp_initiated is replaced", Config{IDPMetadataXML: md, AllowIDPInitiated: true}, []string{"allow_idp_initiated"}},
		{"idp_initiated empty", Config{IDPMetadataXML: md, IDPInitiated: &IDPInitiated{}}, []string{"idp_initiated.client_id", "idp_initiated.redirect_uri"}},
		{"idp_initiated wrong", Config{IDPMetadataXML: md, IDPInitiated: &IDPInitiated{ClientID: "app", RedirectURI: "http://app.test/cb", Scopes: []string{"email", "a b"}}},
			[]string{"idp_initiated.redirect_uri", "idp_initiated.scopes", "idp_initiated.scopes[1]"}},
		{"idp_initiated relative redirect", Config{IDPMetadataXML: md, IDPInitiated: &IDPInitiated{ClientID: "app", RedirectURI: "/cb"}}, []string{"idp_initiated.redirect_uri"}},
		{"idp_initiated redirect with fragment", Config{IDPMetadataXML: md, IDPInitiated: &IDPInitiated{ClientID: "app", RedirectURI: "https://app.test/cb#x"}}, []string{"idp_initiated.redirect_uri"}},
		{"idp_initiated loopback redirect", Config{IDPMetadataXML: md, IDPInitiated: &IDPInitiated{ClientID: "app", RedirectURI: "http://127.0.0.1:9000/cb"}}, nil},
		{"metadata signing key alone", Config{IDPMetadataXML: md, MetadataSigningKeyFile: keyFile}, []string{"metadata_signing_key_file"}},
		{"metadata signing key does not match", Config{IDPMetadataXML: md, MetadataSigningCertificateFile: certFile, MetadataSigningKeyFile: otherKeyFile}, []string{"metadata_signing_key_file"}},
		{"expired inline metadata", Config{IDPMetadataXML: expiredMD}, []string{"idp_metadata_xml"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, fe := range tt.cfg.Validate() {
				if fe.Message == "" {
					t.Errorf("Validate() %q has no message", fe.Path)
				}
				got = append(got, fe.Path)
			}
			sort.Strings(got)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Validate() paths mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestOpenRejectsInvalidConfig(t *testing.T) {
	cfg := &Config{}
	if _, err := cfg.Open(context.Background(), testID, connectors.Options{CallbackURL: testACS, BaseURL: testBaseURL, ReplayCache: &memReplay{}}); err == nil {
		t.Fatal("Open() with no metadata succeeded")
	}
}

// TestOpenRequiresReplayCache checks that a SAML connector cannot be opened
// without a replay cache, whatever else its configuration says, and that
// the refusal happens before the IdP metadata is fetched.
func TestOpenRequiresReplayCache(t *testing.T) {
	ms := newMetadataServer(t, idpMetadataXML(t, idpKey()))
	tests := []struct {
		name string
		cfg  Config
	}{
		{"static metadata", Config{IDPMetadataXML: idpMetadataXML(t, idpKey(), rolloverKey().cert)}},
		{"idp-initiated allowed", Config{IDPMetadataXML: idpMetadataXML(t, idpKey(), rolloverKey().cert), IDPInitiated: &IDPInitiated{ClientID: "app", RedirectURI: "https://app.test/cb"}}},
		{"metadata url", Config{IDPMetadataURL: ms.srv.URL}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := tt.cfg.Open(context.Background(), testID, connectors.Options{HTTPClient: ms.srv.Client(), CallbackURL: testACS, BaseURL: testBaseURL})
			if !errors.Is(err, ErrNoReplayCache) {
				t.Fatalf("Open() without a replay cache error = %v, want ErrNoReplayCache", err)
			}
			if conn != nil {
				t.Errorf("Open() without a replay cache returned %#v, want nil", conn)
			}
		})
	}
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if ms.hits != 0 {
		t.Errorf("Open() without a replay cache fetched the IdP metadata %d times, want 0", ms.hits)
	}
}

// TestHandlePOSTWithoutReplayCache checks that a Connector whose replay
// cache is missing (built other than through Open) refuses every response.
func TestHandlePOSTWithoutReplayCache(t *testing.T) {
	f := newFixture(t, Config{})
	st, raw := f.start(t, "state-1")
	f.conn.replay = nil
	if _, err := f.post(t, raw, f.build(t, defaultSpec(st.RequestID)), "state-1"); !errors.Is(err, ErrNoReplayCache) {
		t.Fatalf("HandlePOST() without a replay cache error = %v, want ErrNoReplayCache", err)
	}
}

func TestDefaults(t *testing.T) {
	f := newFixture(t, Config{})
	got := f.conn.cfg
	if got.EntityID != testEntity {
		t.Errorf("EntityID = %q, want %q", got.EntityID, testEntity)
	}
	if got.RequireSigned != SignedAssertion || got.AllowedSkew != DefaultAllowedSkew || got.Binding != BindingRedirect ||
		got.MetadataRefresh != DefaultMetadataRefresh || got.MaxResponseBytes != DefaultMaxResponseBytes || got.IDPInitiated != nil {
		t.Errorf("defaults = %+v", got)
	}
}

func TestConfigYAML(t *testing.T) {
	src := `
idp_metadata_url: https://idp.test/metadata
metadata_refresh: 30m
require_signed: both
allowed_skew: 2m
binding: post
idp_initiated:
  client_id: app
  redirect_uri: https://app.test/cb
  scopes: [openid, email]
nameid_format: email
subject_attribute: uid
max_response_bytes: 65536
metadata_signing_certificate_file: /etc/fedbroker/saml-metadata.crt
metadata_signing_key_file: /etc/fedbroker/saml-metadata.key
`
	var got Config
	if err := yaml.Unmarshal([]byte(src), &got); err != nil {
		t.Fatal(err)
	}
	want := Config{
		IDPMetadataURL: "https://idp.test/metadata", MetadataRefresh: 30 * time.Minute, RequireSigned: SignedBoth,
		AllowedSkew: 2 * time.Minute, Binding: BindingPOST, NameIDFormat: "email",
		IDPInitiated:     &IDPInitiated{ClientID: "app", RedirectURI: "https://app.test/cb", Scopes: []string{"openid", "email"}},
		SubjectAttribute: "uid", MaxResponseBytes: 65536,
		MetadataSigningCertificateFile: "/etc/fedbroker/saml-metadata.crt", MetadataSigningKeyFile: "/etc/fedbroker/saml-metadata.key",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("yaml config mismatch (-want +got):\n%s", diff)
	}
}
