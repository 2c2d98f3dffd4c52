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
			AllowedSkew: 5 * time.Minute, Binding: BindingPOST, AllowIDPInitiated: true,
			NameIDFormat: "transient", SubjectAttribute: "uid", MaxResponseBytes: 1 << 20,
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
		{"idp-initiated allowed", Config{IDPMetadataXML: idpMetadataXML(t, idpKey(), rolloverKey().cert), AllowIDPInitiated: true}},
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
		got.MetadataRefresh != DefaultMetadataRefresh || got.MaxResponseBytes != DefaultMaxResponseBytes || got.AllowIDPInitiated {
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
allow_idp_initiated: true
nameid_format: email
subject_attribute: uid
max_response_bytes: 65536
`
	var got Config
	if err := yaml.Unmarshal([]byte(src), &got); err != nil {
		t.Fatal(err)
	}
	want := Config{
		IDPMetadataURL: "https://idp.test/metadata", MetadataRefresh: 30 * time.Minute, RequireSigned: SignedBoth,
		AllowedSkew: 2 * time.Minute, Binding: BindingPOST, AllowIDPInitiated: true, NameIDFormat: "email",
		SubjectAttribute: "uid", MaxResponseBytes: 65536,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("yaml config mismatch (-want +got):\n%s", diff)
	}
}
