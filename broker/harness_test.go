package broker

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/crypto/bcrypt"

	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/keys"
	"github.com/fedbroker/fedbroker/broker/oauth"
	"github.com/fedbroker/fedbroker/broker/runtime/runtimetest"
	"github.com/fedbroker/fedbroker/broker/storage"
)

// clock is a test clock shared by the broker, its keys and its storage.
type clock = runtimetest.Clock

func newClock() *clock { return runtimetest.NewClock(time.Now().Truncate(time.Second)) }

const (
	appRedirect    = "http://127.0.0.1:9999/cb"
	appLogout      = "http://127.0.0.1:9999/bye"
	svcRedirect    = "https://svc.example.com/callback"
	alicePassword  = "correct horse battery staple"
	bobPassword    = "hunter2-but-longer"
	testConfigYAML = `
issuer: %s
storage:
  type: memory
connectors:
  - id: local
    type: local
    name: Break-glass accounts
    config:
      users:
        - username: alice
          password_hash: %q
          email: alice@acme.com
          name: Alice Example
          groups: [eng, admins]
        - username: bob
          password_hash: %q
          email: bob@acme.com
          name: Bob Example
  - id: backup
    type: local
    name: Backup accounts
    config:
      users:
        - username: carol
          password_hash: %q
          email: carol@acme.com
clients:
  - id: app
    name: Example App
    public: true
    redirect_uris: [%s]
    post_logout_redirect_uris: [%s]
    audiences: [api.acme.com]
  - id: other
    name: Other App
    public: true
    redirect_uris: ["http://127.0.0.1:8888/cb"]
    connectors: [local]
  - id: svc
    name: Confidential Service
    secret_hash: %q
    redirect_uris: [%s]
`
)

// svcSecret is the confidential test client's secret.
var svcSecret = strings.Repeat("s3cr3t-", 6)

type harness struct {
	t      testing.TB
	srv    *httptest.Server
	b      *Server
	store  storage.Storage
	keys   *keys.Manager
	clock  *clock
	issuer string
	audit  *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
	// discard keeps nothing: a benchmark's audit lines are still formatted,
	// but not collected into a buffer that grows to megabytes and whose
	// copying would be counted as the broker's.
	discard bool
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.discard {
		return len(p), nil
	}
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var hashOnce = sync.OnceValues(func() ([3]string, string) {
	var h [3]string
	for i, p := range []string{alicePassword, bobPassword, "carol-password-123"} {
		b, err := bcrypt.GenerateFromPassword([]byte(p), bcrypt.MinCost)
		if err != nil {
			panic(err)
		}
		h[i] = string(b)
	}
	sh, err := config.HashSecret(svcSecret)
	if err != nil {
		panic(err)
	}
	return h, sh
})

// newHarness starts a broker on an httptest server with store (memory when
// nil). mutate may change the parsed config before the broker is built.
func newHarness(t testing.TB, store storage.Storage, clk *clock, mutate func(*config.Config)) *harness {
	t.Helper()
	if clk == nil {
		clk = newClock()
	}
	srv := httptest.NewUnstartedServer(nil)
	issuer := "http://" + srv.Listener.Addr().String()
	hashes, secretHash := hashOnce()
	yml := fmt.Sprintf(testConfigYAML, issuer, hashes[0], hashes[1], hashes[2], appRedirect, appLogout, secretHash, svcRedirect)
	cfg, err := config.Parse([]byte(yml), func(string) string { return "" })
	if err != nil {
		t.Fatalf("config.Parse: %v", err)
	}
	if mutate != nil {
		mutate(cfg)
	}
	if store == nil {
		store = newMemoryStore(clk)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	km, err := keys.New(ctx, store, keys.Options{Algorithm: cfg.Signing.Algorithm, Algorithms: cfg.Signing.Algorithms, MaxTokenLifetime: 5 * time.Minute, Now: clk.Now})
	if err != nil {
		t.Fatalf("keys.New: %v", err)
	}
	_, bench := t.(*testing.B)
	audit := &syncBuffer{discard: bench}
	b, err := New(ctx, cfg, Options{
		Storage: store,
		Keys:    km,
		Now:     clk.Now,
		Audit:   newJSONLogger(audit),
	})
	if err != nil {
		t.Fatalf("broker.New: %v", err)
	}
	go b.Run(ctx)
	srv.Config.Handler = b.Handler()
	srv.Start()
	t.Cleanup(srv.Close)
	return &harness{t: t, srv: srv, b: b, store: store, keys: km, clock: clk, issuer: issuer, audit: audit}
}

// browser is an HTTP client with a cookie jar that does not follow
// redirects, so every step of a flow can be inspected.
type browser struct {
	t      testing.TB
	client *http.Client
}

func (h *harness) newBrowser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: h.t, client: &http.Client{
		Jar:           jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

type response struct {
	status   int
	header   http.Header
	body     string
	location *url.URL
}

func (br *browser) do(req *http.Request) response {
	br.t.Helper()
	resp, err := br.client.Do(req)
	if err != nil {
		br.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	r := response{status: resp.StatusCode, header: resp.Header, body: string(body)}
	if loc := resp.Header.Get("Location"); loc != "" {
		u, err := resp.Request.URL.Parse(loc)
		if err != nil {
			br.t.Fatalf("bad Location %q: %v", loc, err)
		}
		r.location = u
	}
	return r
}

func (br *browser) get(u string) response {
	br.t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		br.t.Fatal(err)
	}
	return br.do(req)
}

func (br *browser) postForm(u string, form url.Values) response {
	br.t.Helper()
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		br.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return br.do(req)
}

// pkce is a verifier and its S256 challenge.
type pkce struct{ verifier, challenge string }

func newPKCE() pkce {
	v := oauth.RandomToken(32)
	sum := sha256.Sum256([]byte(v))
	return pkce{verifier: v, challenge: base64.RawURLEncoding.EncodeToString(sum[:])}
}

// authParams are the usual /authorize parameters for client "app".
func authParams(p pkce) url.Values {
	return url.Values{
		"client_id":             {"app"},
		"redirect_uri":          {appRedirect},
		"response_type":         {"code"},
		"scope":                 {"openid profile email groups offline_access"},
		"state":                 {"st-" + oauth.RandomToken(6)},
		"nonce":                 {"n-" + oauth.RandomToken(6)},
		"code_challenge":        {p.challenge},
		"code_challenge_method": {"S256"},
	}
}

var (
	reqField  = regexp.MustCompile(`name="req" value="([^"]+)"`)
	csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
)

// passwordLogin walks from a login page to the code redirect.
func (h *harness) passwordLogin(br *browser, loginURL *url.URL, user, password string) response {
	h.t.Helper()
	page := br.get(loginURL.String())
	if page.status != http.StatusOK {
		h.t.Fatalf("GET %s = %d, want 200; body %s", loginURL, page.status, page.body)
	}
	req, csrf := reqField.FindStringSubmatch(page.body), csrfField.FindStringSubmatch(page.body)
	if req == nil || csrf == nil {
		h.t.Fatalf("login page has no req/csrf fields: %s", page.body)
	}
	action := *loginURL
	action.RawQuery = ""
	return br.postForm(action.String(), url.Values{"req": {req[1]}, "csrf": {csrf[1]}, "login": {user}, "password": {password}})
}

// authorize runs /authorize with params and returns the response.
func (h *harness) authorize(br *browser, params url.Values) response {
	h.t.Helper()
	return br.get(h.issuer + "/authorize?" + params.Encode())
}

// login runs a full browser login as user at connector "local" and returns
// the code (and the redirect it came on).
func (h *harness) login(br *browser, params url.Values, user, password string) (string, *url.URL) {
	h.t.Helper()
	params.Set("connector_id", "local")
	r := h.authorize(br, params)
	if r.status != http.StatusFound || r.location == nil {
		h.t.Fatalf("authorize = %d, want 302; body %s", r.status, r.body)
	}
	done := h.passwordLogin(br, r.location, user, password)
	if done.status != http.StatusSeeOther || done.location == nil {
		h.t.Fatalf("login POST = %d, want 303; body %s", done.status, done.body)
	}
	code := done.location.Query().Get("code")
	if code == "" {
		h.t.Fatalf("redirect %s has no code", done.location)
	}
	return code, done.location
}

// tokenResponse is a decoded /token answer, success or error.
type tokenResponse struct {
	status       int
	header       http.Header
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int    `json:"expires_in"`
	IDToken      string `json:"id_token"`
	RefreshToken string `json:"refresh_token"`
	Scope        string `json:"scope"`
	Error        string `json:"error"`
	Description  string `json:"error_description"`
}

// token posts form to /token, with basic credentials when user is set.
func (h *harness) token(form url.Values, user, pass string) tokenResponse {
	h.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, h.issuer+"/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if user != "" {
		req.SetBasicAuth(url.QueryEscape(user), url.QueryEscape(pass))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatalf("POST /token: %v", err)
	}
	defer resp.Body.Close()
	var tr tokenResponse
	body, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(body, &tr); err != nil {
		h.t.Fatalf("POST /token = %d with non-JSON body %q", resp.StatusCode, body)
	}
	tr.status, tr.header = resp.StatusCode, resp.Header
	return tr
}

func (h *harness) redeem(code string, p pkce) tokenResponse {
	h.t.Helper()
	return h.token(url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {appRedirect}, "client_id": {"app"}, "code_verifier": {p.verifier}}, "", "")
}

func (h *harness) refresh(rt, clientID string) tokenResponse {
	h.t.Helper()
	return h.token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {clientID}}, "", "")
}

// verifier is a go-oidc ID token verifier for clientID against the live
// discovery document and JWKS.
func (h *harness) verifier(clientID string) *oidc.IDTokenVerifier {
	h.t.Helper()
	ctx := context.Background()
	p, err := oidc.NewProvider(ctx, h.issuer)
	if err != nil {
		h.t.Fatalf("oidc.NewProvider: %v", err)
	}
	return p.Verifier(&oidc.Config{ClientID: clientID, Now: h.clock.Now})
}

func wantOAuthError(t *testing.T, tr tokenResponse, status int, code string) {
	t.Helper()
	if tr.status != status || tr.Error != code {
		t.Fatalf("token response = %d %q (%s), want %d %q", tr.status, tr.Error, tr.Description, status, code)
	}
}
