package platformtest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fedbroker/fedbroker/broker"
	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/keys"
	"github.com/fedbroker/fedbroker/broker/storage/memory"
)

// offsetClock is the broker's clock: the wall clock moved by an offset, so
// a test can have the broker issue tokens in the past while it keeps
// ticking.
type offsetClock struct{ offset atomic.Int64 }

func (c *offsetClock) Now() time.Time { return time.Now().Add(time.Duration(c.offset.Load())) }

func (c *offsetClock) set(d time.Duration) { c.offset.Store(int64(d)) }

// brokerServer is a broker served over HTTPS by an httptest server.
type brokerServer struct {
	issuer string
	srv    *httptest.Server
	keys   *keys.Manager
	clock  *offsetClock
}

// startBroker starts a broker on a new loopback TLS server with the
// configuration that configYAML returns for the server's issuer URL. The
// broker is built the way `fedbroker serve` builds one on the memory store
// (broker.Start), with clock as its, its keys' and its storage's clock.
func startBroker(t *testing.T, clock *offsetClock, configYAML func(issuer string) string) *brokerServer {
	t.Helper()
	// The listener exists before the server starts, so the issuer URL is
	// known before the broker is built; the handler is set before StartTLS.
	srv := httptest.NewUnstartedServer(nil)
	issuer := "https://" + srv.Listener.Addr().String()
	cfg, err := config.Parse([]byte(configYAML(issuer)), func(string) string { return "" })
	if err != nil {
		srv.Close()
		t.Fatalf("broker configuration: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	store := memory.New(memory.WithClock(clock.Now))
	t.Cleanup(func() { _ = store.Close() })
	kek := make([]byte, 32)
	_, _ = rand.Read(kek)
	maxLife := max(cfg.Tokens.IDToken, cfg.Tokens.AccessToken)
	for _, c := range cfg.Clients {
		maxLife = max(maxLife, c.IDTokenLifetime, c.AccessTokenLifetime)
	}
	quiet := slog.New(slog.DiscardHandler)
	km, err := keys.New(ctx, store, keys.Options{
		Algorithm:        cfg.Signing.Algorithm,
		Algorithms:       cfg.Signing.Algorithms,
		RotationPeriod:   cfg.Signing.RotationPeriod,
		MaxTokenLifetime: maxLife,
		KEK:              kek,
		Logger:           quiet,
		Now:              clock.Now,
	})
	if err != nil {
		srv.Close()
		t.Fatalf("keys.New: %v", err)
	}
	go km.Run(ctx)
	b, err := broker.New(ctx, cfg, broker.Options{Storage: store, Keys: km, Logger: quiet, Audit: quiet, Now: clock.Now})
	if err != nil {
		srv.Close()
		t.Fatalf("broker.New: %v", err)
	}
	srv.Config.Handler = b.Handler()
	srv.StartTLS()
	t.Cleanup(srv.Close)
	if srv.URL != issuer {
		t.Fatalf("server URL %s is not the issuer %s", srv.URL, issuer)
	}
	return &brokerServer{issuer: issuer, srv: srv, keys: km, clock: clock}
}

// caPEM is the PEM certificate that the broker's TLS certificate chains
// to: what a cluster administrator puts in certificateAuthority.
func (b *brokerServer) caPEM() string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: b.srv.Certificate().Raw}))
}

// browser is an HTTPS client with a cookie jar that trusts the broker's
// certificate and does not follow redirects, so that every step of a
// sign-in can be checked.
type browser struct {
	t      *testing.T
	b      *brokerServer
	client *http.Client
}

func (b *brokerServer) newBrowser(t *testing.T) *browser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &browser{t: t, b: b, client: &http.Client{
		Transport:     b.srv.Client().Transport,
		Jar:           jar,
		Timeout:       30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

type page struct {
	status   int
	body     string
	location *url.URL
}

func (br *browser) do(req *http.Request) page {
	br.t.Helper()
	resp, err := br.client.Do(req)
	if err != nil {
		br.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		br.t.Fatalf("%s %s: reading the body: %v", req.Method, req.URL, err)
	}
	p := page{status: resp.StatusCode, body: string(body)}
	if loc := resp.Header.Get("Location"); loc != "" {
		if p.location, err = resp.Request.URL.Parse(loc); err != nil {
			br.t.Fatalf("%s %s: bad Location %q: %v", req.Method, req.URL, loc, err)
		}
	}
	return p
}

func (br *browser) get(u string) page {
	br.t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		br.t.Fatal(err)
	}
	return br.do(req)
}

// postForm posts a form as the broker's own login page does: from the
// broker's origin.
func (br *browser) postForm(u string, form url.Values) page {
	br.t.Helper()
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		br.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", br.b.issuer)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	return br.do(req)
}

var (
	reqField  = regexp.MustCompile(`name="req" value="([^"]+)"`)
	csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
)

// tokenResponse is a decoded answer of the token endpoint.
type tokenResponse struct {
	status      int
	AccessToken string `json:"access_token"`
	IDToken     string `json:"id_token"`
	TokenType   string `json:"token_type"`
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

// token posts form to the token endpoint, with HTTP Basic client
// authentication when clientID and secret are both set.
func (b *brokerServer) token(t *testing.T, form url.Values, clientID, secret string) tokenResponse {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, b.issuer+"/token", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if clientID != "" && secret != "" {
		req.SetBasicAuth(url.QueryEscape(clientID), url.QueryEscape(secret))
	}
	resp, err := b.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("POST /token: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("POST /token: reading the body: %v", err)
	}
	var tr tokenResponse
	if err := json.Unmarshal(body, &tr); err != nil {
		t.Fatalf("POST /token = %d with a body that is not JSON: %q", resp.StatusCode, body)
	}
	tr.status = resp.StatusCode
	return tr
}

// signIn runs the browser sign-in of a command-line client such as
// kubectl's OIDC login plugin: /authorize with PKCE (S256), the password
// form of the local connector, the redirect to the client's loopback
// address with a code, and the code's redemption at /token. It returns the
// token response.
func (b *brokerServer) signIn(t *testing.T, clientID, redirectURI, username, password string) tokenResponse {
	t.Helper()
	br := b.newBrowser(t)
	verifier := randomString(32)
	sum := sha256.Sum256([]byte(verifier))
	state, nonce := randomString(8), randomString(8)
	params := url.Values{
		"client_id":             {clientID},
		"redirect_uri":          {redirectURI},
		"response_type":         {"code"},
		"scope":                 {"openid email groups"},
		"state":                 {state},
		"nonce":                 {nonce},
		"code_challenge":        {base64.RawURLEncoding.EncodeToString(sum[:])},
		"code_challenge_method": {"S256"},
		"connector_id":          {"local"},
	}
	auth := br.get(b.issuer + "/authorize?" + params.Encode())
	if auth.status != http.StatusFound || auth.location == nil {
		t.Fatalf("GET /authorize = %d, want a redirect to the login page; body %s", auth.status, auth.body)
	}
	login := br.get(auth.location.String())
	if login.status != http.StatusOK {
		t.Fatalf("GET %s = %d, want the login form; body %s", auth.location, login.status, login.body)
	}
	req, csrf := reqField.FindStringSubmatch(login.body), csrfField.FindStringSubmatch(login.body)
	if req == nil || csrf == nil {
		t.Fatalf("the login page has no req and csrf fields: %s", login.body)
	}
	action := *auth.location
	action.RawQuery = ""
	done := br.postForm(action.String(), url.Values{"req": {req[1]}, "csrf": {csrf[1]}, "login": {username}, "password": {password}})
	if done.status != http.StatusSeeOther || done.location == nil {
		t.Fatalf("POST %s = %d, want a redirect to the client; body %s", action.String(), done.status, done.body)
	}
	back := done.location
	if got := back.Scheme + "://" + back.Host + back.Path; got != redirectURI {
		t.Fatalf("redirected to %s, want %s", back, redirectURI)
	}
	q := back.Query()
	if q.Get("state") != state || q.Get("iss") != b.issuer || q.Get("code") == "" {
		t.Fatalf("redirect %s: want state %q, iss %q and a code", back, state, b.issuer)
	}
	tr := b.token(t, url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {q.Get("code")},
		"redirect_uri":  {redirectURI},
		"client_id":     {clientID},
		"code_verifier": {verifier},
	}, "", "")
	if tr.status != http.StatusOK || tr.IDToken == "" {
		t.Fatalf("code redemption = %d %s (%s), want an ID token", tr.status, tr.Error, tr.Description)
	}
	if got := claimsOf(t, tr.IDToken)["nonce"]; got != nonce {
		t.Fatalf("ID token nonce = %v, want %q", got, nonce)
	}
	return tr
}

// exchange trades subjectToken (a JWT from a trusted workload issuer) for
// one of the broker's access tokens for audience (RFC 8693).
func (b *brokerServer) exchange(t *testing.T, clientID, secret, subjectToken, audience string) tokenResponse {
	t.Helper()
	return b.token(t, url.Values{
		"grant_type":         {"urn:ietf:params:oauth:grant-type:token-exchange"},
		"subject_token":      {subjectToken},
		"subject_token_type": {"urn:ietf:params:oauth:token-type:jwt"},
		"audience":           {audience},
	}, clientID, secret)
}

func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// claimsOf decodes a JWT's payload without verifying it, to look at what
// the broker issued.
func claimsOf(t *testing.T, jwt string) map[string]any {
	t.Helper()
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("not a compact JWS: %d parts", len(parts))
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatalf("JWT payload: %v", err)
	}
	var c map[string]any
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatalf("JWT payload: %v", err)
	}
	return c
}

// headerOf decodes a JWT's protected header.
func headerOf(t *testing.T, jwt string) map[string]any {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(strings.Split(jwt, ".")[0])
	if err != nil {
		t.Fatalf("JWT header: %v", err)
	}
	var h map[string]any
	if err := json.Unmarshal(raw, &h); err != nil {
		t.Fatalf("JWT header: %v", err)
	}
	return h
}

// withClaims returns jwt with its payload replaced by claims and its
// signature kept: a tampered token.
func withClaims(t *testing.T, jwt string, claims map[string]any) string {
	t.Helper()
	parts := strings.Split(jwt, ".")
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%s.%s.%s", parts[0], base64.RawURLEncoding.EncodeToString(payload), parts[2])
}
