package broker

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"

	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/runtime"
	"github.com/fedbroker/fedbroker/broker/storage"
	"github.com/fedbroker/fedbroker/mapping"
)

const adminToken = "admin-token-0123456789abcdef0123456789"

// adminAPI drives an admin handler in-process, so each request can come
// from a chosen client address.
type adminAPI struct {
	t       *testing.T
	handler http.Handler
}

func newAdminAPI(t *testing.T, h *harness, reload func(context.Context) error) *adminAPI {
	t.Helper()
	return &adminAPI{t: t, handler: h.b.AdminHandler(AdminOptions{Token: adminToken, Reload: reload, Gatherer: h.b.Gatherer()})}
}

type adminResp struct {
	status int
	header http.Header
	body   string
}

// call sends method path with body from remote, carrying authorization
// as the Authorization header when it is not empty.
func (a *adminAPI) call(remote, authorization, method, path, body string) adminResp {
	a.t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.RemoteAddr = remote
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	rec := httptest.NewRecorder()
	a.handler.ServeHTTP(rec, req)
	return adminResp{status: rec.Code, header: rec.Header(), body: rec.Body.String()}
}

// do is call from a fixed address with the right token.
func (a *adminAPI) do(method, path, body string) adminResp {
	a.t.Helper()
	return a.call("192.0.2.1:4000", "Bearer "+adminToken, method, path, body)
}

func decodeJSON[T any](t *testing.T, body string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("body %q is not the expected JSON: %v", body, err)
	}
	return v
}

func TestAdminAuthentication(t *testing.T) {
	h := newHarness(t, nil, nil, nil)
	a := newAdminAPI(t, h, nil)
	tests := []struct {
		name, remote, auth string
		want               int
	}{
		{"no token", "192.0.2.10:1", "", http.StatusUnauthorized},
		{"wrong token", "192.0.2.11:1", "Bearer not-the-token", http.StatusUnauthorized},
		{"token prefix", "192.0.2.12:1", "Bearer " + adminToken[:10], http.StatusUnauthorized},
		{"token with suffix", "192.0.2.13:1", "Bearer " + adminToken + "x", http.StatusUnauthorized},
		{"basic scheme", "192.0.2.14:1", "Basic " + adminToken, http.StatusUnauthorized},
		{"lowercase scheme", "192.0.2.15:1", "bearer " + adminToken, http.StatusUnauthorized},
		{"right token", "192.0.2.16:1", "Bearer " + adminToken, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := a.call(tt.remote, tt.auth, http.MethodGet, "/admin/connectors", "")
			if r.status != tt.want {
				t.Fatalf("status = %d, want %d; body %s", r.status, tt.want, r.body)
			}
			if tt.want == http.StatusUnauthorized {
				if got := r.header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer") {
					t.Errorf("WWW-Authenticate = %q, want a Bearer challenge", got)
				}
				if e := decodeJSON[map[string]string](t, r.body); e["error"] == "" {
					t.Errorf("error body = %s, want {\"error\": ...}", r.body)
				}
			}
		})
	}
	audit := h.audit.String()
	if got := strings.Count(audit, `"msg":"admin_auth_failed"`); got != 6 {
		t.Errorf("audit has %d admin_auth_failed lines, want 6:\n%s", got, audit)
	}
	if !strings.Contains(audit, `"remote":"192.0.2.11"`) {
		t.Errorf("audit does not name the failing address:\n%s", audit)
	}
	if strings.Contains(audit, "not-the-token") || strings.Contains(audit, adminToken) {
		t.Errorf("audit carries a presented token:\n%s", audit)
	}
}

// TestAdminAuthRateLimit: five failures from one address, then further
// wrong attempts from it get 429 with Retry-After; the right token still
// works (someone sharing the operator's address cannot lock the operator
// out), and other addresses are not affected.
func TestAdminAuthRateLimit(t *testing.T) {
	h := newHarness(t, nil, nil, nil)
	a := newAdminAPI(t, h, nil)
	const attacker = "198.51.100.7:5000"
	for i := range 5 {
		if r := a.call(attacker, "Bearer guess", http.MethodGet, "/admin/connectors", ""); r.status != http.StatusUnauthorized {
			t.Fatalf("bad attempt %d = %d, want 401", i+1, r.status)
		}
	}
	r := a.call(attacker, "Bearer guess", http.MethodGet, "/admin/connectors", "")
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" {
		t.Fatalf("6th bad attempt = %d Retry-After %q, want 429 with Retry-After", r.status, r.header.Get("Retry-After"))
	}
	// The right token is never refused.
	if r := a.call(attacker, "Bearer "+adminToken, http.MethodGet, "/admin/connectors", ""); r.status != http.StatusOK {
		t.Fatalf("right token from a limited address = %d, want 200", r.status)
	}
	// Another port of the same host is the same address.
	if r := a.call("198.51.100.7:5001", "Bearer guess", http.MethodGet, "/admin/connectors", ""); r.status != http.StatusTooManyRequests {
		t.Fatalf("wrong token from the same host, other port = %d, want 429", r.status)
	}
	if r := a.call("198.51.100.8:5000", "Bearer "+adminToken, http.MethodGet, "/admin/connectors", ""); r.status != http.StatusOK {
		t.Fatalf("right token from another address = %d, want 200", r.status)
	}
	// Successful requests never consume the failure budget.
	for i := range 10 {
		if r := a.do(http.MethodGet, "/admin/connectors", ""); r.status != http.StatusOK {
			t.Fatalf("good request %d = %d, want 200", i, r.status)
		}
	}
	if got := strings.Count(h.audit.String(), `"msg":"admin_auth_failed"`); got != 5 {
		t.Errorf("audit has %d admin_auth_failed lines, want 5 (throttled requests are not checked)", got)
	}
}

// TestAdminAuthRateLimitForwardedHeaders: the limit is on the connection's
// address; X-Forwarded-For and X-Real-IP neither evade it nor lock out
// another address.
func TestAdminAuthRateLimitForwardedHeaders(t *testing.T) {
	h := newHarness(t, nil, nil, nil)
	a := newAdminAPI(t, h, nil)
	const attacker, operator = "198.51.100.9:5000", "192.0.2.77"
	for i := range 8 {
		req := httptest.NewRequest(http.MethodGet, "/admin/connectors", nil)
		req.RemoteAddr = attacker
		req.Header.Set("Authorization", "Bearer guess")
		req.Header.Set("X-Forwarded-For", operator)
		req.Header.Set("X-Real-IP", fmt.Sprintf("203.0.113.%d", i))
		rec := httptest.NewRecorder()
		a.handler.ServeHTTP(rec, req)
		want := http.StatusUnauthorized
		if i >= 5 {
			want = http.StatusTooManyRequests
		}
		if rec.Code != want {
			t.Fatalf("bad attempt %d with forged forwarding headers = %d, want %d", i+1, rec.Code, want)
		}
	}
	if r := a.call(operator+":6000", "Bearer "+adminToken, http.MethodGet, "/admin/connectors", ""); r.status != http.StatusOK {
		t.Errorf("the operator's address named in forged headers = %d, want 200", r.status)
	}
	if audit := h.audit.String(); strings.Contains(audit, operator) || !strings.Contains(audit, `"remote":"198.51.100.9"`) {
		t.Errorf("audit names a forged address, or not the real one:\n%s", audit)
	}
}

func TestAdminConnectors(t *testing.T) {
	h := newHarness(t, nil, nil, nil)
	a := newAdminAPI(t, h, nil)
	// One successful sign-in shows in the health record.
	h.login(h.newBrowser(), authParams(newPKCE()), "alice", alicePassword)
	r := a.do(http.MethodGet, "/admin/connectors", "")
	if r.status != http.StatusOK {
		t.Fatalf("GET /admin/connectors = %d %s", r.status, r.body)
	}
	got := decodeJSON[struct {
		Connectors []struct {
			ID, Type, Name string
			Health         map[string]any
		}
	}](t, r.body)
	if len(got.Connectors) != 2 {
		t.Fatalf("connectors = %+v, want local and backup", got.Connectors)
	}
	for i, want := range []struct{ id, name string }{{"local", "Break-glass accounts"}, {"backup", "Backup accounts"}} {
		c := got.Connectors[i]
		if c.ID != want.id || c.Type != "local" || c.Name != want.name {
			t.Errorf("connector %d = %+v, want %s (local) %q", i, c, want.id, want.name)
		}
	}
	if s, _ := got.Connectors[0].Health["successes"].(float64); s != 1 {
		t.Errorf("local health = %v, want successes 1", got.Connectors[0].Health)
	}
}

func TestAdminMappingTest(t *testing.T) {
	h := newHarness(t, nil, nil, func(cfg *config.Config) {
		cfg.Mappings["strict"] = mappingSpecYAML(t, `
require:
  - expr: claims.email.endsWith("@acme.com")
    message: Only Acme accounts.
claims:
  email: claims.email
  groups: claims.?groups.orValue([])
link: 'claims.email_verified == true ? claims.email : ""'
`)
		cfg.Connectors[0].Mapping = "strict"
	})
	a := newAdminAPI(t, h, nil)
	conn, _ := h.b.rt.Load().Connector("local")
	m := conn.Mapping
	tests := []struct {
		name, query string
		in          runtime.MappingInput
		explain     bool
		want        string
	}{
		{"accepted", "", runtime.MappingInput{Connector: "local", Claims: map[string]any{"sub": "alice", "email": "alice@acme.com", "email_verified": true, "groups": []any{"eng"}}}, false, "accepted"},
		{"accepted explained", "?explain=true", runtime.MappingInput{Connector: "local", Claims: map[string]any{"sub": "alice", "email": "alice@acme.com", "email_verified": true}}, true, "accepted"},
		{"rejected", "?explain=true", runtime.MappingInput{Connector: "local", Claims: map[string]any{"sub": "eve", "email": "eve@evil.example"}}, true, "rejected"},
		{"run-time error", "", runtime.MappingInput{Connector: "local", Claims: map[string]any{"sub": "x"}}, false, "error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, _ := json.Marshal(tt.in)
			r := a.do(http.MethodPost, "/admin/mapping/test"+tt.query, string(body))
			if r.status != http.StatusOK {
				t.Fatalf("status = %d %s", r.status, r.body)
			}
			want, _ := json.Marshal(runtime.RunMapping(context.Background(), m, "local", tt.in, tt.explain))
			got := decodeJSON[map[string]any](t, r.body)
			if diff := cmp.Diff(decodeJSON[map[string]any](t, string(want)), got); diff != "" {
				t.Errorf("admin dry run differs from RunMapping (-RunMapping +admin):\n%s", diff)
			}
			if got["decision"] != tt.want {
				t.Errorf("decision = %v, want %s", got["decision"], tt.want)
			}
			if _, has := got["steps"]; has != tt.explain {
				t.Errorf("steps present = %v, want %v", has, tt.explain)
			}
		})
	}
	if r := a.do(http.MethodPost, "/admin/mapping/test", `{"connector": "nope", "claims": {}}`); r.status != http.StatusNotFound {
		t.Errorf("unknown connector = %d, want 404", r.status)
	}
	if r := a.do(http.MethodPost, "/admin/mapping/test", `{"connector": `); r.status != http.StatusBadRequest {
		t.Errorf("malformed body = %d, want 400", r.status)
	}
	if !strings.Contains(h.audit.String(), `"msg":"admin_mapping_test"`) {
		t.Error("no admin_mapping_test audit line")
	}
}

func TestAdminReloadEndpoint(t *testing.T) {
	h := newHarness(t, nil, nil, nil)
	if r := newAdminAPI(t, h, nil).do(http.MethodPost, "/admin/reload", ""); r.status != http.StatusNotImplemented {
		t.Errorf("reload without a reloader = %d, want 501", r.status)
	}
	fail := true
	a := newAdminAPI(t, h, func(context.Context) error {
		if fail {
			return config.Errors{{Path: "clients[0].id", Message: "is required"}, {Path: "issuer", Message: "must be a URL"}}
		}
		return nil
	})
	r := a.do(http.MethodPost, "/admin/reload", "")
	if r.status != http.StatusUnprocessableEntity {
		t.Fatalf("refused reload = %d, want 422", r.status)
	}
	got := decodeJSON[struct {
		Error    string
		Problems []string
	}](t, r.body)
	if got.Error == "" || len(got.Problems) != 2 || !strings.Contains(got.Problems[0], "clients[0].id") || !strings.Contains(got.Problems[1], "issuer") {
		t.Errorf("refused reload body = %s, want an error and both problems with their paths", r.body)
	}
	fail = false
	if r := a.do(http.MethodPost, "/admin/reload", ""); r.status != http.StatusOK || !strings.Contains(r.body, `"reloaded"`) {
		t.Errorf("reload = %d %s, want 200 reloaded", r.status, r.body)
	}
	audit := h.audit.String()
	for _, want := range []string{`"outcome":"refused"`, `"outcome":"applied"`} {
		if !strings.Contains(audit, want) {
			t.Errorf("audit lacks admin_reload %s", want)
		}
	}
}

func TestAdminRevokeSubject(t *testing.T) {
	h := newHarness(t, nil, nil, nil)
	a := newAdminAPI(t, h, nil)
	br := h.newBrowser()
	p := newPKCE()
	code, _ := h.login(br, authParams(p), "alice", alicePassword)
	tr := h.redeem(code, p)
	if tr.status != http.StatusOK || tr.RefreshToken == "" {
		t.Fatalf("redeem = %d %s", tr.status, tr.Error)
	}
	sub := idTokenSubject(t, tr.IDToken)
	// Bob's tokens must survive Alice's revocation.
	bp := newPKCE()
	bcode, _ := h.login(h.newBrowser(), authParams(bp), "bob", bobPassword)
	btr := h.redeem(bcode, bp)

	// Before: SSO answers a second authorize without a login page.
	if r := h.authorize(br, authParams(newPKCE())); r.status != http.StatusFound || r.location.Query().Get("code") == "" {
		t.Fatalf("SSO authorize before revocation = %d %v, want a code", r.status, r.location)
	}
	r := a.do(http.MethodPost, "/admin/subjects/"+url.PathEscape(sub)+"/revoke", "")
	if r.status != http.StatusOK {
		t.Fatalf("revoke = %d %s", r.status, r.body)
	}
	got := decodeJSON[struct {
		Sub      string
		Families int `json:"refresh_families_revoked"`
		Sessions int `json:"sessions_ended"`
	}](t, r.body)
	if got.Sub != sub || got.Families < 1 || got.Sessions != 1 {
		t.Errorf("revoke = %+v, want sub %s, at least one family, one session", got, sub)
	}
	wantOAuthError(t, h.refresh(tr.RefreshToken, "app"), http.StatusBadRequest, "invalid_grant")
	// The SSO session is gone: authorize goes to a login page again.
	if r := h.authorize(br, authParams(newPKCE())); r.location == nil || r.location.Query().Get("code") != "" {
		t.Fatalf("authorize after revocation = %d %v, want a login page, not a code", r.status, r.location)
	}
	if r := h.refresh(btr.RefreshToken, "app"); r.status != http.StatusOK {
		t.Errorf("another user's refresh after the revocation = %d %s, want 200", r.status, r.Error)
	}
	if !strings.Contains(h.audit.String(), `"msg":"admin_revoke_subject"`) {
		t.Error("no admin_revoke_subject audit line")
	}
}

func TestAdminLinks(t *testing.T) {
	h := linkHarness(t)
	a := newAdminAPI(t, h, nil)
	list := func(query string) []map[string]any {
		t.Helper()
		r := a.do(http.MethodGet, "/admin/links"+query, "")
		if r.status != http.StatusOK {
			t.Fatalf("GET /admin/links%s = %d %s", query, r.status, r.body)
		}
		return decodeJSON[struct{ Links []map[string]any }](t, r.body).Links
	}
	if got := list(""); len(got) != 0 {
		t.Fatalf("links before any sign-in = %v, want none", got)
	}
	sub, _ := h.loginAt("local", "alice")
	subB, _ := h.loginAt("backup", "alice-b")
	if sub == "" || sub != subB {
		t.Fatalf("linked subjects = %q and %q, want one subject", sub, subB)
	}
	dave, _ := h.loginAt("local", "dave")
	links := list("")
	if len(links) != 2 {
		t.Fatalf("links = %v, want alice's and dave's", links)
	}
	mine := list("?sub=" + url.QueryEscape(sub))
	if len(mine) != 1 || mine[0]["key"] != "alice@acme.com" || mine[0]["sub"] != sub || mine[0]["connector_id"] != "local" {
		t.Fatalf("links of %s = %v, want alice@acme.com first seen at local", sub, mine)
	}
	if got := list("?sub=nobody"); len(got) != 0 {
		t.Errorf("links of an unknown subject = %v, want none", got)
	}
	if r := a.do(http.MethodDelete, "/admin/links/"+url.PathEscape("nobody@acme.com"), ""); r.status != http.StatusNotFound {
		t.Errorf("DELETE unknown link = %d, want 404", r.status)
	}
	if r := a.do(http.MethodDelete, "/admin/links/alice%40acme.com", ""); r.status != http.StatusNoContent {
		t.Fatalf("DELETE link = %d %s, want 204", r.status, r.body)
	}
	if r := a.do(http.MethodDelete, "/admin/links/alice%40acme.com", ""); r.status != http.StatusNotFound {
		t.Errorf("DELETE link again = %d, want 404", r.status)
	}
	if got := list("?sub=" + url.QueryEscape(dave)); len(got) != 1 {
		t.Errorf("dave's link after deleting alice's = %v, want it kept", got)
	}
	// The next sign-in with the key starts a new link.
	h.loginAt("backup", "alice-b")
	again := list("")
	var found bool
	for _, l := range again {
		if l["key"] == "alice@acme.com" {
			found = true
			if l["connector_id"] != "backup" {
				t.Errorf("new link = %v, want first seen at backup", l)
			}
		}
	}
	if !found {
		t.Errorf("links after a new sign-in = %v, want alice@acme.com again", again)
	}
	if !strings.Contains(h.audit.String(), `"msg":"admin_unlink"`) {
		t.Error("no admin_unlink audit line")
	}
}

func TestAdminRotateKeys(t *testing.T) {
	h := newHarness(t, nil, nil, nil)
	a := newAdminAPI(t, h, nil)
	kidOf := func() string {
		t.Helper()
		p := newPKCE()
		code, _ := h.login(h.newBrowser(), authParams(p), "alice", alicePassword)
		tr := h.redeem(code, p)
		sig, err := jose.ParseSignedCompact(tr.IDToken, []jose.SignatureAlgorithm{jose.RS256, jose.ES256, jose.EdDSA, jose.PS256})
		if err != nil {
			t.Fatalf("parse id_token: %v", err)
		}
		return sig.Signatures[0].Header.KeyID
	}
	before := kidOf()
	jwks := func() jose.JSONWebKeySet {
		t.Helper()
		resp, err := http.Get(h.issuer + "/keys")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var set jose.JSONWebKeySet
		if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
			t.Fatal(err)
		}
		return set
	}
	published := jwks()
	rotations := metricValue(t, a, "fedbroker_signing_key_rotations_total")
	if r := a.do(http.MethodPost, "/admin/keys/rotate", ""); r.status != http.StatusOK {
		t.Fatalf("rotate = %d %s", r.status, r.body)
	}
	after := kidOf()
	if after == before || after == "" {
		t.Fatalf("signing kid after rotation = %q, before %q; want a new one", after, before)
	}
	// The key that starts signing was published before it signed.
	if len(published.Key(after)) == 0 {
		t.Errorf("the new signing kid %s was not in the JWKS before the rotation", after)
	}
	set := jwks()
	if len(set.Key(after)) == 0 || len(set.Key(before)) == 0 {
		t.Errorf("JWKS after rotation lacks the new kid %s or the old kid %s", after, before)
	}
	if got := metricValue(t, a, "fedbroker_signing_key_rotations_total"); got <= rotations {
		t.Errorf("fedbroker_signing_key_rotations_total = %v after rotation, was %v", got, rotations)
	}
	if !strings.Contains(h.audit.String(), `"msg":"admin_rotate_keys"`) {
		t.Error("no admin_rotate_keys audit line")
	}
}

// idTokenSubject reads the sub claim of a token the broker issued (its
// signature is checked elsewhere).
func idTokenSubject(t *testing.T, tok string) string {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token %q is not a JWS", tok)
	}
	raw, err := b64(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c struct{ Sub string }
	if err := json.Unmarshal(raw, &c); err != nil || c.Sub == "" {
		t.Fatal(errors.Join(errors.New("id_token has no sub"), err))
	}
	return c.Sub
}

// mappingSpecYAML parses a mapping written as YAML.
func mappingSpecYAML(t *testing.T, s string) mapping.Spec {
	t.Helper()
	var spec mapping.Spec
	if err := yaml.Unmarshal([]byte(s), &spec); err != nil {
		t.Fatalf("mapping YAML: %v", err)
	}
	return spec
}

// testCA issues certificates for mutual TLS tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key}
}

// issue returns a client certificate signed by the CA.
func (ca *testCA) issue(t *testing.T, name string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestAdminMutualTLS runs the admin API on a TLS listener that verifies
// client certificates when given (as serve configures it): a verified
// certificate authenticates; no certificate needs the token; a certificate
// from another CA never completes the handshake.
func TestAdminMutualTLS(t *testing.T) {
	h := newHarness(t, nil, nil, nil)
	ca, rogue := newTestCA(t, "admin CA"), newTestCA(t, "rogue CA")
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	start := func(opts AdminOptions) *httptest.Server {
		srv := httptest.NewUnstartedServer(h.b.AdminHandler(opts))
		srv.TLS = &tls.Config{ClientCAs: pool, ClientAuth: tls.VerifyClientCertIfGiven, MinVersion: tls.VersionTLS12}
		srv.StartTLS()
		t.Cleanup(srv.Close)
		return srv
	}
	mtls := start(AdminOptions{Token: adminToken, ClientCertOK: true})
	tokenOnly := start(AdminOptions{Token: adminToken})
	get := func(srv *httptest.Server, cert *tls.Certificate, token string) (int, error) {
		t.Helper()
		tr := srv.Client().Transport.(*http.Transport).Clone()
		if cert != nil {
			// Present the certificate even when its issuer is not one the
			// server asks for.
			tr.TLSClientConfig.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
		}
		defer tr.CloseIdleConnections()
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/admin/connectors", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	good, bad := ca.issue(t, "operator"), rogue.issue(t, "operator")
	tests := []struct {
		name    string
		srv     *httptest.Server
		cert    *tls.Certificate
		token   string
		want    int
		wantErr bool
	}{
		{"verified certificate", mtls, &good, "", http.StatusOK, false},
		{"no certificate, token", mtls, nil, adminToken, http.StatusOK, false},
		{"no certificate, no token", mtls, nil, "", http.StatusUnauthorized, false},
		{"certificate from another CA", mtls, &bad, "", 0, true},
		{"verified certificate where only tokens count", tokenOnly, &good, "", http.StatusUnauthorized, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := get(tt.srv, tt.cert, tt.token)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("GET = %d, %v; want %d (error %v)", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

// TestAdminEscapedPathValues: link keys and subjects may hold "/" and "@";
// path-escaped, they reach the right record.
func TestAdminEscapedPathValues(t *testing.T) {
	h := newHarness(t, nil, nil, nil)
	a := newAdminAPI(t, h, nil)
	ctx := context.Background()
	for _, l := range []storage.Link{
		{Key: "a/b@acme.com", Subject: "okta/123", ConnectorID: "local", UpstreamSubject: "u1"},
		{Key: "a", Subject: "okta", ConnectorID: "local", UpstreamSubject: "u2"},
	} {
		if _, _, err := h.store.CreateLink(ctx, l); err != nil {
			t.Fatal(err)
		}
	}
	r := a.do(http.MethodGet, "/admin/links?sub="+url.QueryEscape("okta/123"), "")
	if got := decodeJSON[struct{ Links []storage.Link }](t, r.body).Links; len(got) != 1 || got[0].Key != "a/b@acme.com" {
		t.Errorf("links of okta/123 = %+v", got)
	}
	r = a.do(http.MethodPost, "/admin/subjects/"+url.PathEscape("okta/123")+"/revoke", "")
	if r.status != http.StatusOK || decodeJSON[map[string]any](t, r.body)["sub"] != "okta/123" {
		t.Errorf("revoke okta/123 = %d %s", r.status, r.body)
	}
	if r := a.do(http.MethodDelete, "/admin/links/"+url.PathEscape("a/b@acme.com"), ""); r.status != http.StatusNoContent {
		t.Fatalf("DELETE a/b@acme.com = %d %s", r.status, r.body)
	}
	if _, err := h.store.GetLink(ctx, "a"); err != nil {
		t.Errorf("link a after deleting a/b@acme.com: %v", err)
	}
}
