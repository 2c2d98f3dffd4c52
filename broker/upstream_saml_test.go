package broker

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"html"
	"io"
	"log"
	"math/big"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crewjam/saml/samlidp"
	"github.com/google/go-cmp/cmp"
)

// samlIdPKey is one RSA key and self-signed certificate for all SAML IdPs
// of this package's tests.
var samlIdPKey = sync.OnceValues(func() (*rsa.PrivateKey, *x509.Certificate) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "test SAML IdP"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		panic(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		panic(err)
	}
	return key, cert
})

// samlUpstream is crewjam/saml's IdP on plain http, with its own browser
// (the IdP session cookie lives there).
type samlUpstream struct {
	srv    *httptest.Server
	client *http.Client
}

func newSAMLUpstream(t *testing.T) *samlUpstream {
	t.Helper()
	var handler http.Handler
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handler.ServeHTTP(w, r) }))
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	key, cert := samlIdPKey()
	idp, err := samlidp.New(samlidp.Options{URL: *u, Key: key, Certificate: cert, Store: &samlidp.MemoryStore{}, Logger: log.New(io.Discard, "", 0)})
	if err != nil {
		t.Fatal(err)
	}
	handler = idp
	jar, _ := cookiejar.New(nil)
	su := &samlUpstream{srv: srv, client: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	su.do(t, http.MethodPut, "/users/alice", `{"name":"alice","password":"hunter2","email":"alice@acme.com","groups":["admins","eng"],"given_name":"Alice","surname":"Smith","common_name":"Alice Smith"}`)
	return su
}

func (su *samlUpstream) do(t *testing.T, method, path, body string) []byte {
	t.Helper()
	req, _ := http.NewRequest(method, su.srv.URL+path, strings.NewReader(body))
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := su.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		t.Fatalf("%s %s: %s: %s", method, path, resp.Status, b)
	}
	return b
}

// samlHarness is a broker with a saml connector "fab" registered at a
// fresh IdP.
func samlHarness(t *testing.T) (*harness, *samlUpstream) {
	t.Helper()
	su := newSAMLUpstream(t)
	md := su.do(t, http.MethodGet, "/metadata", "")
	h := newHarness(t, nil, nil, withUpstreams(t, []upstream{{id: "fab", typ: "saml", name: "Fabrikam", config: "idp_metadata_xml: " + yamlQuote(string(md))}}, nil))
	sp := h.newBrowser().get(h.issuer + "/saml/fab/metadata")
	if sp.status != http.StatusOK {
		t.Fatalf("SP metadata = %d", sp.status)
	}
	su.do(t, http.MethodPut, "/services/broker", sp.body)
	return h, su
}

// yamlQuote quotes s as a YAML double-quoted scalar (JSON strings are).
func yamlQuote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

var (
	samlFormAction = regexp.MustCompile(`<form method="post" action="([^"]+)"`)
	samlFormInput  = regexp.MustCompile(`<input type="hidden" name="(\w+)" value="([^"]*)"`)
)

// samlPost is what the IdP's auto-submitting form posts to the ACS.
type samlPost struct {
	action string
	form   url.Values
}

// signIn signs in at the IdP for the broker redirect r and returns the
// form the IdP would post to the broker's ACS.
func (su *samlUpstream) signIn(t *testing.T, h *harness, r response) samlPost {
	t.Helper()
	if r.status != http.StatusFound || r.location == nil || !strings.HasPrefix(r.location.String(), su.srv.URL+"/") {
		t.Fatalf("want a redirect to the SAML IdP, got %d %v; body %s", r.status, r.location, r.body)
	}
	su.do(t, http.MethodPost, "/login", url.Values{"user": {"alice"}, "password": {"hunter2"}}.Encode())
	resp, err := su.client.Get(r.location.String())
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("IdP SSO = %s: %s", resp.Status, body)
	}
	action := samlFormAction.FindSubmatch(body)
	if action == nil || html.UnescapeString(string(action[1])) != h.issuer+"/callback/fab" {
		t.Fatalf("IdP form does not post to the broker's ACS: %s", body)
	}
	form := url.Values{}
	for _, m := range samlFormInput.FindAllSubmatch(body, -1) {
		form.Set(string(m[1]), html.UnescapeString(string(m[2])))
	}
	if form.Get("SAMLResponse") == "" || form.Get("RelayState") == "" {
		t.Fatalf("IdP form has no SAMLResponse or RelayState: %s", body)
	}
	return samlPost{action: h.issuer + "/callback/fab", form: form}
}

// start begins a sign-in at "fab" in br and returns the IdP's ACS post.
func (su *samlUpstream) start(t *testing.T, h *harness, br *browser, params url.Values) samlPost {
	t.Helper()
	return su.signIn(t, h, h.startUpstream(br, params, "fab"))
}

func TestUpstreamSAMLHappyPath(t *testing.T) {
	h, su := samlHarness(t)
	br := h.newBrowser()
	p := newPKCE()
	params := authParams(p)
	post := su.start(t, h, br, params)
	code := h.codeFrom(br.postForm(post.action, post.form), params.Get("state"))
	tr := h.redeem(code, p)
	if tr.status != http.StatusOK {
		t.Fatalf("redeem = %d %s", tr.status, tr.Error)
	}
	tok, err := h.es256Verifier("app").Verify(context.Background(), tr.IDToken)
	if err != nil {
		t.Fatalf("ID token does not verify: %v", err)
	}
	var claims struct {
		Email    string `json:"email"`
		Name     string `json:"name"`
		Username string `json:"preferred_username"`
		Nonce    string `json:"nonce"`
	}
	if err := tok.Claims(&claims); err != nil {
		t.Fatal(err)
	}
	got := []string{claims.Email, claims.Name, claims.Username, claims.Nonce}
	want := []string{"alice@acme.com", "Alice Smith", "alice", params.Get("nonce")}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ID token email, name, preferred_username, nonce (-want +got):\n%s", diff)
	}
	h.wantAudit(t, "login", "fab", map[string]string{"connector_type": "saml", "upstream_sub": "alice@acme.com"})
}

// TestUpstreamSAMLRefusals checks each bad ACS post becomes an error page
// and an audit line naming the connector.
func TestUpstreamSAMLRefusals(t *testing.T) {
	h, su := samlHarness(t)
	tests := []struct {
		name string
		// send posts (or gets) something at the ACS in a sign-in that
		// browser br started, where post is the IdP's genuine answer.
		send   func(t *testing.T, br *browser, post samlPost) response
		status int
		code   string
		event  string
	}{
		{"replayed response", func(t *testing.T, br *browser, post samlPost) response {
			if r := br.postForm(post.action, post.form); r.status != http.StatusSeeOther {
				t.Fatalf("first post = %d, want 303; body %s", r.status, r.body)
			}
			return br.postForm(post.action, post.form)
		}, http.StatusBadRequest, "expired_request", "login_rejected"},
		{"no RelayState (unsolicited)", func(t *testing.T, br *browser, post samlPost) response {
			return br.postForm(post.action, url.Values{"SAMLResponse": post.form["SAMLResponse"]})
		}, http.StatusBadRequest, "expired_request", "login_rejected"},
		{"RelayState of another browser", func(t *testing.T, br *browser, post samlPost) response {
			return h.newBrowser().postForm(post.action, post.form)
		}, http.StatusBadRequest, "browser_mismatch", "login_rejected"},
		{"response for another sign-in of the same browser", func(t *testing.T, br *browser, post samlPost) response {
			other := su.start(t, h, br, authParams(newPKCE()))
			form := url.Values{"SAMLResponse": {post.form.Get("SAMLResponse")}, "RelayState": {other.form.Get("RelayState")}}
			return br.postForm(post.action, form)
		}, http.StatusBadRequest, "request_mismatch", "login_failed"},
		{"tampered assertion", func(t *testing.T, br *browser, post samlPost) response {
			raw, err := base64.StdEncoding.DecodeString(post.form.Get("SAMLResponse"))
			if err != nil {
				t.Fatal(err)
			}
			i := bytes.Index(raw, []byte("Assertion"))
			j := bytes.LastIndex(raw, []byte("alice@acme.com"))
			if i < 0 || j < i {
				t.Fatalf("no assertion naming alice in %s", raw)
			}
			raw[j] = 'm' // "mlice@acme.com", inside the signed assertion
			form := url.Values{"SAMLResponse": {base64.StdEncoding.EncodeToString(raw)}, "RelayState": post.form["RelayState"]}
			return br.postForm(post.action, form)
		}, http.StatusBadRequest, "signature_invalid", "login_failed"},
		{"oversized response", func(t *testing.T, br *browser, post samlPost) response {
			big := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte("<x/>"), 200<<10))
			form := url.Values{"SAMLResponse": {big}, "RelayState": post.form["RelayState"]}
			return br.postForm(post.action, form)
		}, http.StatusBadRequest, "response_too_large", "login_failed"},
		{"GET to the ACS", func(t *testing.T, br *browser, post samlPost) response {
			return br.get(post.action + "?" + url.Values{"SAMLResponse": post.form["SAMLResponse"], "state": post.form["RelayState"]}.Encode())
		}, http.StatusBadRequest, "invalid_request", "login_rejected"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			br := h.newBrowser()
			post := su.start(t, h, br, authParams(newPKCE()))
			before := h.auditCount(tt.event, "fab")
			r := tt.send(t, br, post)
			wantErrorPage(t, r, tt.status, tt.code)
			if got := h.auditCount(tt.event, "fab"); got <= before {
				t.Errorf("%s audits naming fab = %d, want more than %d; audit:\n%s", tt.event, got, before, h.audit.String())
			}
		})
	}
}
