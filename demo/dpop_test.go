package demo

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fedbroker/fedbroker/dpop"
)

// heldTokens returns the access and refresh token of the app's one session.
func heldTokens(t *testing.T, a *App) (access, tokenType, refresh string) {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.sessions) != 1 {
		t.Fatalf("the app has %d sessions, want 1", len(a.sessions))
	}
	for _, s := range a.sessions {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.token.AccessToken, s.token.TokenType, s.token.RefreshToken
	}
	return "", "", ""
}

// element returns the unescaped text of the page's element with id.
func element(t *testing.T, page, id string) string {
	t.Helper()
	m := regexp.MustCompile(`id="` + id + `"[^>]*>([^<]*)<`).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no element %s on the page: %s", id, page)
	}
	return html.UnescapeString(m[1])
}

// TestDemoDPoP: the app sends DPoP proofs to the broker's token endpoint,
// so its access token is bound to its key (token_type DPoP, cnf.jkt). The
// page shows the binding, the API's answer to the call with a proof, and
// its refusal of the same token sent as a bearer token without one.
func TestDemoDPoP(t *testing.T) {
	d := startDemo(t)
	b := newTestBrowser(t)
	page := signInContoso(t, b, d)
	jkt := d.app.dpop.Thumbprint()

	if got := element(t, page, "token-type"); got != "DPoP" {
		t.Fatalf("token type = %q, want DPoP: %s", got, page)
	}
	if got := element(t, page, "cnf-jkt"); got != jkt {
		t.Errorf("cnf.jkt shown = %q, want the app key's thumbprint %q", got, jkt)
	}
	if got := element(t, page, "dpop-jkt"); got != jkt {
		t.Errorf("app key thumbprint shown = %q, want %q", got, jkt)
	}
	if got := element(t, page, "api-status"); got != "200 OK" {
		t.Errorf("API status with a proof = %q, want 200 OK", got)
	}
	if !strings.Contains(element(t, page, "api-body"), `"cnf_jkt": "`+jkt+`"`) {
		t.Errorf("the API's answer lacks cnf_jkt %s: %s", jkt, page)
	}
	if got := element(t, page, "stolen-status"); got != "401 Unauthorized" {
		t.Errorf("API status of the stolen token = %q, want 401 Unauthorized", got)
	}
	if got := element(t, page, "stolen-challenge"); !strings.Contains(got, `DPoP realm="demo-api", error="invalid_token"`) {
		t.Errorf("challenge of the stolen token = %q, want a DPoP invalid_token challenge", got)
	}

	access, tokenType, refresh := heldTokens(t, d.app)
	if tokenType != "DPoP" || jwtCnfJKT(access) != jkt {
		t.Fatalf("held token: type %q, cnf.jkt %q; want DPoP, %q", tokenType, jwtCnfJKT(access), jkt)
	}
	// The API refuses the token as a bearer token, and with another key's
	// proof.
	if code, body := callWhoami(t, d, "Bearer "+access, ""); code != http.StatusUnauthorized {
		t.Errorf("bearer use of the bound token: %d %s, want 401", code, body)
	}
	thief := newSigner(t)
	stolen, err := thief.Proof(http.MethodGet, d.APIURL+"/whoami", access, "")
	if err != nil {
		t.Fatal(err)
	}
	if code, body := callWhoami(t, d, "DPoP "+access, stolen); code != http.StatusUnauthorized || !strings.Contains(body, "invalid_dpop_proof") {
		t.Errorf("bound token with the thief's proof: %d %s, want 401 invalid_dpop_proof", code, body)
	}
	// The broker refuses the refresh token without a proof of the key.
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}, "client_id": {"demo-app"}}
	resp, err := http.PostForm(d.BrokerURL+"/token", form)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "invalid_dpop_proof") {
		t.Errorf("refresh without a proof: %s %s, want 400 invalid_dpop_proof", resp.Status, body)
	}
}

// TestDemoDPoPCurlLine: the curl line carries a proof made for it; it
// works once, and its replay is refused.
func TestDemoDPoPCurlLine(t *testing.T) {
	d := startDemo(t)
	b := newTestBrowser(t)
	page := signInContoso(t, b, d)
	m := regexp.MustCompile(`^curl -H "Authorization: DPoP ([A-Za-z0-9_.-]+)" -H "DPoP: ([A-Za-z0-9_.-]+)" (\S+)$`).FindStringSubmatch(element(t, page, "curl"))
	if m == nil {
		t.Fatalf("the curl line is not curl -H \"Authorization: DPoP <token>\" -H \"DPoP: <proof>\" <url>: %s", page)
	}
	if m[1] != element(t, page, "access-token-raw") || m[3] != d.APIURL+"/whoami" {
		t.Fatalf("the curl line's token or URL is not the page's: %v", m[1:])
	}
	if code, body := callWhoami(t, d, "DPoP "+m[1], m[2]); code != http.StatusOK {
		t.Fatalf("the curl line's request: %d %s, want 200", code, body)
	}
	if code, body := callWhoami(t, d, "DPoP "+m[1], m[2]); code != http.StatusUnauthorized || !strings.Contains(body, "invalid_dpop_proof") {
		t.Errorf("the curl line's request again: %d %s, want 401 invalid_dpop_proof (replay)", code, body)
	}
}

// TestDemoDPoPRefresh: refreshes send a proof of the same key, so the
// refreshed access token stays bound to it.
func TestDemoDPoPRefresh(t *testing.T) {
	d := startDemo(t)
	b := newTestBrowser(t)
	signInContoso(t, b, d)
	before, _, _ := heldTokens(t, d.app)
	d.app.margin.Store(int64(6 * time.Minute)) // every token is about to expire
	page, _ := b.do(http.MethodGet, d.AppURL+"/", nil)
	d.app.margin.Store(0)
	after, tokenType, _ := heldTokens(t, d.app)
	if after == before {
		t.Fatal("the access token was not refreshed")
	}
	if tokenType != "DPoP" || jwtCnfJKT(after) != d.app.dpop.Thumbprint() {
		t.Errorf("refreshed token: type %q, cnf.jkt %q; want DPoP and the app's key", tokenType, jwtCnfJKT(after))
	}
	if got := element(t, page, "api-status"); got != "200 OK" {
		t.Errorf("API status after the refresh = %q, want 200 OK", got)
	}
}

func newSigner(t *testing.T) *dpop.Signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := dpop.NewSigner(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// callWhoami calls the demo API with the Authorization value and, when not
// empty, the DPoP proof.
func callWhoami(t *testing.T, d *Demo, authorization, proof string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, d.APIURL+"/whoami", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", authorization)
	if proof != "" {
		req.Header.Set(dpop.Header, proof)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// tokenServer is a token endpoint that records the proofs it gets and
// answers use_dpop_nonce as long as the proof lacks the nonce it wants
// (none when nonce is empty).
type tokenServer struct {
	srv   *httptest.Server
	nonce string

	mu     sync.Mutex
	proofs []*dpop.Proof
	bodies []string
	other  int // requests that are not POST /token
}

func newTokenServer(t *testing.T, nonce string) *tokenServer {
	ts := &tokenServer{nonce: nonce}
	ts.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/token" {
			ts.mu.Lock()
			ts.other++
			ts.mu.Unlock()
			if r.Header.Get(dpop.Header) != "" {
				t.Errorf("%s %s carries a DPoP proof", r.Method, r.URL)
			}
			return
		}
		body, _ := io.ReadAll(r.Body)
		p, err := dpop.Verify(r.Header.Get(dpop.Header), dpop.Check{Method: "POST", URL: ts.srv.URL + "/token", Nonce: ts.nonce})
		ts.mu.Lock()
		ts.bodies = append(ts.bodies, string(body))
		if p != nil {
			ts.proofs = append(ts.proofs, p)
		}
		ts.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if ts.nonce != "" {
			w.Header().Set(dpopNonceHeader, ts.nonce)
		}
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": "use_dpop_nonce", "detail": err.Error()})
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]string{"access_token": "at", "token_type": "DPoP"})
	}))
	t.Cleanup(ts.srv.Close)
	return ts
}

func (ts *tokenServer) client(s *dpop.Signer) *http.Client {
	return &http.Client{Transport: &dpopTransport{base: http.DefaultTransport, signer: s, tokenURL: ts.srv.URL + "/token"}}
}

func post(t *testing.T, c *http.Client, u, body string) (int, string) {
	t.Helper()
	resp, err := c.Post(u, "application/x-www-form-urlencoded", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestDPoPTransport(t *testing.T) {
	ts := newTokenServer(t, "")
	s := newSigner(t)
	c := ts.client(s)
	for range 2 {
		if code, body := post(t, c, ts.srv.URL+"/token", "grant_type=x"); code != http.StatusOK {
			t.Fatalf("token request: %d %s", code, body)
		}
	}
	if code, _ := post(t, c, ts.srv.URL+"/other", "a=b"); code != http.StatusOK {
		t.Fatal("other POST failed")
	}
	if resp, err := c.Get(ts.srv.URL + "/token"); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if len(ts.proofs) != 2 || ts.proofs[0].JTI == ts.proofs[1].JTI {
		t.Fatalf("token requests carried %d valid proofs, want 2 with distinct jti", len(ts.proofs))
	}
	for _, p := range ts.proofs {
		if p.Thumbprint != s.Thumbprint() || p.ATH != "" {
			t.Errorf("proof %+v: want the signer's key and no ath", p)
		}
	}
	if ts.other != 2 || ts.bodies[0] != "grant_type=x" {
		t.Errorf("other requests = %d (want 2), body %q", ts.other, ts.bodies[0])
	}
}

// The server's first answer asks for its nonce: the transport sends the
// request again, body included, with a proof carrying it, and keeps the
// nonce for the next request.
func TestDPoPTransportNonce(t *testing.T) {
	ts := newTokenServer(t, "n-42")
	c := ts.client(newSigner(t))
	if code, body := post(t, c, ts.srv.URL+"/token", "grant_type=x&code=y"); code != http.StatusOK {
		t.Fatalf("token request: %d %s", code, body)
	}
	if code, body := post(t, c, ts.srv.URL+"/token", "grant_type=z"); code != http.StatusOK {
		t.Fatalf("second token request: %d %s", code, body)
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	want := []string{"grant_type=x&code=y", "grant_type=x&code=y", "grant_type=z"}
	if strings.Join(ts.bodies, "|") != strings.Join(want, "|") {
		t.Errorf("bodies = %q, want %q (one retry, then the nonce kept)", ts.bodies, want)
	}
	if len(ts.proofs) != 2 || ts.proofs[0].Nonce != "n-42" {
		t.Errorf("proofs with the nonce = %d, want 2", len(ts.proofs))
	}
}

// A server that keeps asking for another nonce gets one retry, not a loop.
func TestDPoPTransportNonceOnce(t *testing.T) {
	var n int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n++
		w.Header().Set(dpopNonceHeader, strings.Repeat("n", n))
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, `{"error":"use_dpop_nonce"}`)
	}))
	defer srv.Close()
	c := &http.Client{Transport: &dpopTransport{base: http.DefaultTransport, signer: newSigner(t), tokenURL: srv.URL + "/token"}}
	code, body := post(t, c, srv.URL+"/token", "a=b")
	if code != http.StatusBadRequest || !strings.Contains(body, "use_dpop_nonce") || n != 2 {
		t.Errorf("got %d %s after %d requests, want the second use_dpop_nonce answer after 2", code, body, n)
	}
	// Another 400 with a nonce is handed back as it came, body intact.
	srv2 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(dpopNonceHeader, "x")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, `{"error":"invalid_grant"}`)
	}))
	defer srv2.Close()
	c2 := &http.Client{Transport: &dpopTransport{base: http.DefaultTransport, signer: newSigner(t), tokenURL: srv2.URL + "/token"}}
	if code, body := post(t, c2, srv2.URL+"/token", "a=b"); code != http.StatusBadRequest || body != `{"error":"invalid_grant"}` {
		t.Errorf("got %d %q, want the invalid_grant answer", code, body)
	}
}

func TestJWTCnfJKT(t *testing.T) {
	for tok, want := range map[string]string{
		"":           "",
		"a.b":        "",
		"a.!!.c":     "",
		"a.bnVsbA.c": "", // null
		"a.e30.c":    "", // {}
		"a." + b64url(`{"cnf":{"jkt":"abc"}}`) + ".c": "abc",
		"a." + b64url(`{"cnf":"x"}`) + ".c":           "",
	} {
		if got := jwtCnfJKT(tok); got != want {
			t.Errorf("jwtCnfJKT(%q) = %q, want %q", tok, got, want)
		}
	}
}

func b64url(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
