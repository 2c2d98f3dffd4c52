package saml

import (
	"bytes"
	"context"
	"encoding/base64"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/crewjam/saml/logger"
	"github.com/crewjam/saml/samlidp"
	"github.com/google/go-cmp/cmp"

	"github.com/fedbroker/fedbroker/connectors"
)

// testIdP is crewjam/saml's IdP on an httptest TLS server.
type testIdP struct {
	srv    *httptest.Server
	idp    *samlidp.Server
	client *http.Client
}

func newTestIdP(t *testing.T, opts ...func(*samlidp.Options)) *testIdP {
	t.Helper()
	var handler http.Handler
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handler.ServeHTTP(w, r) }))
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	kp := idpKey()
	o := samlidp.Options{
		URL:         *u,
		Key:         kp.key,
		Certificate: kp.cert,
		Store:       &samlidp.MemoryStore{},
		Logger:      logger.DefaultLogger,
	}
	for _, opt := range opts {
		opt(&o)
	}
	idp, err := samlidp.New(o)
	if err != nil {
		t.Fatal(err)
	}
	handler = idp
	ti := &testIdP{srv: srv, idp: idp, client: srv.Client()}
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	ti.client.Jar = jar
	ti.client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	ti.put(t, "/users/alice", `{"name":"alice","password":"hunter2","email":"alice@acme.com","groups":["admins","eng"],"given_name":"Alice","surname":"Smith","common_name":"Alice Smith"}`)
	return ti
}

func (ti *testIdP) put(t *testing.T, path, body string) {
	t.Helper()
	if status := ti.tryPut(t, path, body); status/100 != 2 {
		t.Fatalf("PUT %s: %d", path, status)
	}
}

// tryPut PUTs body at path and returns the status.
func (ti *testIdP) tryPut(t *testing.T, path, body string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, ti.srv.URL+path, strings.NewReader(body))
	resp, err := ti.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

var formInput = regexp.MustCompile(`<input type="hidden" name="(\w+)" value="([^"]*)"`)

// hiddenFields returns the hidden inputs of an HTML form.
func hiddenFields(body []byte) url.Values {
	v := url.Values{}
	for _, m := range formInput.FindAllSubmatch(body, -1) {
		v.Set(string(m[1]), html.UnescapeString(string(m[2])))
	}
	return v
}

// login drives the browser through the IdP: it signs in at the IdP's
// login form, which sets the IdP session cookie, then sends the login
// request and returns the form the IdP posts to the ACS.
func (ti *testIdP) login(t *testing.T, lr connectors.LoginRequest) url.Values {
	t.Helper()
	resp, err := ti.client.PostForm(ti.srv.URL+"/login", url.Values{"user": {"alice"}, "password": {"hunter2"}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("login: %s: %s", resp.Status, body)
	}
	if lr.RedirectURL != "" {
		resp, err = ti.client.Get(lr.RedirectURL)
	} else {
		form := url.Values{}
		for k, v := range lr.Fields {
			form.Set(k, v)
		}
		resp, err = ti.client.PostForm(lr.PostURL, form)
	}
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("sso: %s: %s", resp.Status, body)
	}
	if !bytes.Contains(body, []byte(`action="`+testACS+`"`)) {
		t.Fatalf("sso: no form posting to the ACS: %s", body)
	}
	acs := hiddenFields(body)
	if acs.Get("SAMLResponse") == "" {
		t.Fatalf("sso: no SAMLResponse: %s", body)
	}
	return acs
}

// TestSAMLIdP signs in at crewjam/saml's IdP over real HTTP and checks the
// identity, for each binding, with and without an SP key (with one, the
// IdP encrypts the assertion to it).
func TestSAMLIdP(t *testing.T) {
	certFile, keyFile := writeKeyPair(t, spKey())
	tests := []struct {
		name      string
		cfg       Config
		encrypted bool
	}{
		{"redirect binding", Config{}, false},
		{"post binding", Config{Binding: BindingPOST}, false},
		{"redirect binding, signed request, encrypted assertion", Config{SPCertificateFile: certFile, SPKeyFile: keyFile}, true},
		{"post binding, signed request, encrypted assertion", Config{Binding: BindingPOST, SPCertificateFile: certFile, SPKeyFile: keyFile}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ti := newTestIdP(t)
			cfg := tt.cfg
			cfg.IDPMetadataURL = ti.srv.URL + "/metadata"
			ctx := context.Background()
			replay := &memReplay{}
			impl, err := cfg.Open(ctx, testID, connectors.Options{HTTPClient: ti.client, CallbackURL: testACS, BaseURL: testBaseURL, Now: time.Now, ReplayCache: replay})
			if err != nil {
				t.Fatalf("Open() error = %v", err)
			}
			conn := impl.(*Connector)
			_, md, err := conn.Metadata(ctx)
			if err != nil {
				t.Fatal(err)
			}
			ti.put(t, "/services/broker", string(md))

			lr, st, err := conn.LoginRequest(ctx, connectors.Scopes{}, testACS, "relay-1")
			if err != nil {
				t.Fatalf("LoginRequest() error = %v", err)
			}
			acs := ti.login(t, lr)
			if got := acs.Get("RelayState"); got != "relay-1" {
				t.Errorf("RelayState = %q, want relay-1", got)
			}
			raw, _ := base64.StdEncoding.DecodeString(acs.Get("SAMLResponse"))
			if got := bytes.Contains(raw, []byte("EncryptedAssertion")); got != tt.encrypted {
				t.Errorf("response has EncryptedAssertion = %v, want %v", got, tt.encrypted)
			}

			r := httptest.NewRequest(http.MethodPost, testACS, strings.NewReader(acs.Encode()))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			id, err := conn.HandlePOST(ctx, connectors.Scopes{}, st, r)
			if err != nil {
				t.Fatalf("HandlePOST() error = %v", err)
			}
			// The IdP's SessionIndex is random: checked, then cleared.
			ld, err := decodeLogoutData(id.LogoutData)
			if err != nil {
				t.Fatal(err)
			}
			if id.SessionID == "" || ld.SessionIndex != id.SessionID || ld.NameID != "alice@acme.com" || ld.Format != "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress" {
				t.Errorf("SessionID = %q, logout data = %+v; want the IdP's SessionIndex and NameID", id.SessionID, ld)
			}
			id.SessionID, id.LogoutData = "", nil
			want := connectors.Identity{
				Subject: "alice@acme.com",
				Claims: map[string]any{
					"nameid":                            "alice@acme.com",
					"nameid_format":                     "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
					"urn:oid:0.9.2342.19200300.100.1.1": []any{"alice"},
					"urn:oid:0.9.2342.19200300.100.1.3": []any{"alice@acme.com"},
					"urn:oid:1.3.6.1.4.1.5923.1.1.1.6":  []any{"alice@acme.com"},
					"urn:oid:2.5.4.4":                   []any{"Smith"},
					"urn:oid:2.5.4.42":                  []any{"Alice"},
					"urn:oid:2.5.4.3":                   []any{"Alice Smith"},
					"urn:oid:1.3.6.1.4.1.5923.1.1.1.1":  []any{"admins", "eng"},
				},
			}
			if diff := cmp.Diff(want, id); diff != "" {
				t.Errorf("HandlePOST() identity mismatch (-want +got):\n%s", diff)
			}

			// The same post again is a replay.
			r = httptest.NewRequest(http.MethodPost, testACS, strings.NewReader(acs.Encode()))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			_, err = conn.HandlePOST(ctx, connectors.Scopes{}, st, r)
			wantCode(t, err, CodeReplayed)
		})
	}
}
