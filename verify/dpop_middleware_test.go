package verify

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/fedbroker/fedbroker/dpop"
)

const dpopAlgs = `algs="ES256 ES384 RS256 PS256 EdDSA"`

// guarded serves v's middleware (requiring orders:read) over real HTTP,
// with TLS when tls is set; the handler answers the subject it saw.
func guarded(t *testing.T, v *Verifier, tls bool, scopes ...string) *httptest.Server {
	t.Helper()
	h := v.Middleware(scopes...)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, ok := ClaimsFromContext(r.Context())
		if !ok {
			http.Error(w, "no claims", http.StatusInternalServerError)
			return
		}
		_, _ = io.WriteString(w, c.Subject)
	}))
	srv := httptest.NewUnstartedServer(h)
	if tls {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	return srv
}

type dpopCall struct {
	name     string
	method   string   // default GET
	path     string   // default /orders
	auth     string   // Authorization
	proofs   []string // DPoP headers
	status   int
	wantAuth []string // WWW-Authenticate values, exact
	wantBody string   // subject on success, "error" of the JSON body otherwise
}

func (c dpopCall) do(t *testing.T, srv *httptest.Server) {
	t.Helper()
	method, path := c.method, c.path
	if method == "" {
		method = http.MethodGet
	}
	if path == "" {
		path = "/orders"
	}
	req, err := http.NewRequestWithContext(t.Context(), method, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.auth != "" {
		req.Header.Set("Authorization", c.auth)
	}
	for _, p := range c.proofs {
		req.Header.Add(dpop.Header, p)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != c.status {
		t.Fatalf("status = %d, want %d (body %s)", resp.StatusCode, c.status, body)
	}
	if got := resp.Header.Values("WWW-Authenticate"); strings.Join(got, "\n") != strings.Join(c.wantAuth, "\n") {
		t.Errorf("WWW-Authenticate = %q, want %q", got, c.wantAuth)
	}
	got := string(body)
	if c.status != http.StatusOK {
		var m map[string]string
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatalf("body %q is not JSON: %v", body, err)
		}
		got = m["error"]
	}
	if got != c.wantBody {
		t.Errorf("body = %q, want %q", got, c.wantBody)
	}
}

func TestMiddlewareDPoP(t *testing.T) {
	is, k, v, clock := setup(t)
	srv := guarded(t, v, false, "orders:read")
	url := srv.URL + "/orders"
	h, thief := newHolder(t), newHolder(t)
	now := clock.now()
	token := boundToken(t, is, k, h.jkt)
	unbound := sign(t, k, "at+jwt", is.claims())
	readOnly := is.claims()
	readOnly["cnf"] = map[string]any{"jkt": h.jkt}
	readOnly["scope"] = "openid"
	noScope := sign(t, k, "at+jwt", readOnly)
	proof := func(method, u, tok string) string { return h.proof(t, h.claims(method, u, tok, now), nil) }
	replayed := proof("GET", url, token)

	const realm = `realm="orders-api"`
	deny := func(code, desc string) []string {
		return []string{`DPoP ` + realm + `, error="` + code + `", error_description="` + desc + `", ` + dpopAlgs}
	}
	calls := []dpopCall{
		{name: "valid", auth: "DPoP " + token, proofs: []string{proof("GET", url, token)}, status: 200, wantBody: "user-123"},
		{name: "lower-case scheme", auth: "dpop " + token, proofs: []string{proof("GET", url, token)}, status: 200, wantBody: "user-123"},
		{name: "query ignored", path: "/orders?page=2", auth: "DPoP " + token, proofs: []string{proof("GET", url, token)}, status: 200, wantBody: "user-123"},
		{name: "POST", method: "POST", auth: "DPoP " + token, proofs: []string{proof("POST", url, token)}, status: 200, wantBody: "user-123"},
		{name: "first use", auth: "DPoP " + token, proofs: []string{replayed}, status: 200, wantBody: "user-123"},
		{name: "replayed", auth: "DPoP " + token, proofs: []string{replayed}, status: 401, wantAuth: deny("invalid_dpop_proof", "the DPoP proof was already used"), wantBody: "invalid_dpop_proof"},
		{name: "no credentials", status: 401, wantAuth: []string{`Bearer ` + realm, `DPoP ` + realm + `, ` + dpopAlgs}, wantBody: "unauthorized"},
		{name: "bound token as bearer", auth: "Bearer " + token, status: 401, wantAuth: deny("invalid_token", "the token is bound to a DPoP key: present it with a DPoP proof"), wantBody: "invalid_token"},
		{name: "bound token as bearer with a proof", auth: "Bearer " + token, proofs: []string{proof("GET", url, token)}, status: 401, wantAuth: deny("invalid_token", "the token is bound to a DPoP key: present it with a DPoP proof"), wantBody: "invalid_token"},
		{name: "unbound token with DPoP scheme", auth: "DPoP " + unbound, proofs: []string{proof("GET", url, unbound)}, status: 401, wantAuth: deny("invalid_token", "the token is not bound to a DPoP key"), wantBody: "invalid_token"},
		{name: "no proof", auth: "DPoP " + token, status: 401, wantAuth: deny("invalid_dpop_proof", "exactly one DPoP proof is required"), wantBody: "invalid_dpop_proof"},
		{name: "two proofs", auth: "DPoP " + token, proofs: []string{proof("GET", url, token), proof("GET", url, token)}, status: 401, wantAuth: deny("invalid_dpop_proof", "exactly one DPoP proof is required"), wantBody: "invalid_dpop_proof"},
		{name: "no proof, expired token", auth: "DPoP " + sign(t, k, "at+jwt", map[string]any{"iss": is.url(), "sub": "x", "aud": testAudience, "iat": now.Unix(), "exp": now.Unix() - 3600, "cnf": map[string]any{"jkt": h.jkt}}), status: 401, wantAuth: deny("invalid_token", "the token expired"), wantBody: "invalid_token"},
		{name: "wrong htm", method: "DELETE", auth: "DPoP " + token, proofs: []string{proof("GET", url, token)}, status: 401, wantAuth: deny("invalid_dpop_proof", "the DPoP proof is invalid"), wantBody: "invalid_dpop_proof"},
		{name: "wrong htu", path: "/admin", auth: "DPoP " + token, proofs: []string{proof("GET", url, token)}, status: 401, wantAuth: deny("invalid_dpop_proof", "the DPoP proof is invalid"), wantBody: "invalid_dpop_proof"},
		{name: "https htu over http", auth: "DPoP " + token, proofs: []string{proof("GET", strings.Replace(url, "http:", "https:", 1), token)}, status: 401, wantAuth: deny("invalid_dpop_proof", "the DPoP proof is invalid"), wantBody: "invalid_dpop_proof"},
		{name: "proof for another token", auth: "DPoP " + token, proofs: []string{proof("GET", url, unbound)}, status: 401, wantAuth: deny("invalid_dpop_proof", "the DPoP proof is invalid"), wantBody: "invalid_dpop_proof"},
		{name: "stolen token, thief's key", auth: "DPoP " + token, proofs: []string{thief.proof(t, thief.claims("GET", url, token, now), nil)}, status: 401, wantAuth: deny("invalid_dpop_proof", "the DPoP proof is not signed by the token's key"), wantBody: "invalid_dpop_proof"},
		{name: "garbage proof", auth: "DPoP " + token, proofs: []string{"garbage"}, status: 401, wantAuth: deny("invalid_dpop_proof", "the DPoP proof is invalid"), wantBody: "invalid_dpop_proof"},
		{name: "missing scope", auth: "DPoP " + noScope, proofs: []string{proof("GET", url, noScope)}, status: 403, wantAuth: []string{`DPoP ` + realm + `, error="insufficient_scope", error_description="the token lacks a required scope", scope="orders:read", ` + dpopAlgs}, wantBody: "insufficient_scope"},
		{name: "plain bearer still works", auth: "Bearer " + unbound, status: 200, wantBody: "user-123"},
	}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) { c.do(t, srv) })
	}
}

// Over TLS the default htu is https; behind a proxy, the configured base
// URL is.
func TestMiddlewareDPoPRequestURL(t *testing.T) {
	is, k, v, clock := setup(t)
	h := newHolder(t)
	token := boundToken(t, is, k, h.jkt)
	proof := func(u string) string { return h.proof(t, h.claims("GET", u, token, clock.now()), nil) }

	tls := guarded(t, v, true)
	dpopCall{auth: "DPoP " + token, proofs: []string{proof(tls.URL + "/orders")}, status: 200, wantBody: "user-123"}.do(t, tls)
	dpopCall{auth: "DPoP " + token, proofs: []string{proof(strings.Replace(tls.URL, "https:", "http:", 1) + "/orders")}, status: 401,
		wantAuth: []string{`DPoP realm="orders-api", error="invalid_dpop_proof", error_description="the DPoP proof is invalid", ` + dpopAlgs},
		wantBody: "invalid_dpop_proof"}.do(t, tls)

	is2, k2, proxied, _ := setup(t, WithDPoPBaseURL("https://api.example.com/"))
	behind := guarded(t, proxied, false)
	token2 := boundToken(t, is2, k2, h.jkt)
	proof2 := func(u string) string { return h.proof(t, h.claims("GET", u, token2, clock.now()), nil) }
	dpopCall{auth: "DPoP " + token2, proofs: []string{proof2("https://api.example.com/orders")}, status: 200, wantBody: "user-123"}.do(t, behind)
	dpopCall{auth: "DPoP " + token2, proofs: []string{proof2(behind.URL + "/orders")}, status: 401,
		wantAuth: []string{`DPoP realm="orders-api", error="invalid_dpop_proof", error_description="the DPoP proof is invalid", ` + dpopAlgs},
		wantBody: "invalid_dpop_proof"}.do(t, behind)
}
