package oidc

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/fedbroker/fedbroker/connectors"
	"github.com/fedbroker/fedbroker/connectors/testidp"
)

const callbackURL = "https://broker.example/callback/up"

// clock is a settable test clock, offset from real time.
type clock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset += d
}

func newIdP(t *testing.T, opts testidp.Options) *testidp.IdP {
	t.Helper()
	idp := testidp.New(opts)
	t.Cleanup(idp.Close)
	idp.SetUser(testidp.User{Subject: "u1", Claims: map[string]any{
		"email": "ada@example.com", "email_verified": true, "name": "Ada",
	}})
	return idp
}

func baseConfig(idp *testidp.IdP) Config {
	return Config{Issuer: idp.URL(), ClientID: idp.ClientID(), ClientSecret: idp.ClientSecret()}
}

func open(t *testing.T, cfg Config, clk *clock) *Connector {
	t.Helper()
	if errs := cfg.Validate(); len(errs) > 0 {
		t.Fatalf("Validate() = %v", errs)
	}
	opts := connectors.Options{HTTPClient: &http.Client{}, CallbackURL: callbackURL}
	if clk != nil {
		opts.Now = clk.Now
	}
	impl, err := cfg.Open(context.Background(), "up", opts)
	if err != nil {
		t.Fatalf("Open() error = %v", err)
	}
	return impl.(*Connector)
}

// login runs a whole sign-in through c.
func login(t *testing.T, c *Connector) (connectors.Identity, error) {
	t.Helper()
	ctx := context.Background()
	u, st, err := c.LoginURL(ctx, connectors.Scopes{}, callbackURL, "state-1")
	if err != nil {
		t.Fatalf("LoginURL() error = %v", err)
	}
	r, err := testidp.CallbackRequest(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.URL.Query().Get("state"); got != "state-1" {
		t.Fatalf("callback state = %q, want state-1", got)
	}
	return c.HandleCallback(ctx, connectors.Scopes{}, st, r)
}

// wantCode fails t unless err is a *connectors.UserError with code.
func wantCode(t *testing.T, err error, code string) *connectors.UserError {
	t.Helper()
	var ue *connectors.UserError
	if !errors.As(err, &ue) {
		t.Fatalf("error = %v (%T), want *connectors.UserError with code %q", err, err, code)
	}
	if ue.Code != code {
		t.Fatalf("error code = %q (%v), want %q", ue.Code, err, code)
	}
	if ue.Message == "" {
		t.Fatalf("error %v has an empty Message", err)
	}
	return ue
}

// logoutOP is the test OpenID provider with what single logout needs and
// testidp lacks: an end_session_endpoint in discovery and a key of its own,
// published in its JWKS, that signs logout tokens. It is a front server for
// a testidp.IdP: it serves discovery (testidp's document with its own URL as
// issuer and jwks_uri, plus end_session_endpoint) and the JWKS (testidp's
// keys plus the logout key) and relays the token endpoint (so that a
// refresh may lose its id_token); authorize and userinfo stay at testidp,
// which puts the front URL in its ID tokens as iss.
type logoutOP struct {
	*testidp.IdP
	front *httptest.Server

	key     *ecdsa.PrivateKey // published under kid
	kid     string
	foreign *ecdsa.PrivateKey // never published

	mu          sync.Mutex
	endSession  string // "" none; a leading "/" is relative to the front URL
	noRefreshID bool   // token responses to refresh_token grants lose their id_token
}

// SetNoIDTokenOnRefresh makes refresh_token grants answer without an
// id_token (as many providers do).
func (op *logoutOP) SetNoIDTokenOnRefresh(on bool) {
	op.mu.Lock()
	defer op.mu.Unlock()
	op.noRefreshID = on
}

// token relays a token request to testidp, dropping the id_token of a
// refresh when SetNoIDTokenOnRefresh says so.
func (op *logoutOP) token(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	form, _ := url.ParseQuery(string(body))
	req, err := http.NewRequestWithContext(r.Context(), http.MethodPost, op.URL()+"/token", bytes.NewReader(body))
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	req.Header = r.Header.Clone()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	var doc map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	op.mu.Lock()
	strip := op.noRefreshID && form.Get("grant_type") == "refresh_token"
	op.mu.Unlock()
	if strip {
		delete(doc, "id_token")
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(resp.StatusCode)
	_ = json.NewEncoder(w).Encode(doc)
}

// newLogoutOP starts a logoutOP whose end_session_endpoint is endSession
// (see logoutOP.endSession).
func newLogoutOP(t *testing.T, endSession string) *logoutOP {
	t.Helper()
	op := &logoutOP{IdP: newIdP(t, testidp.Options{}), kid: "logout-key", endSession: endSession}
	var err error
	if op.key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	if op.foreign, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", op.discovery)
	mux.HandleFunc("GET /keys", op.jwks)
	mux.HandleFunc("POST /token", op.token)
	op.front = httptest.NewServer(mux)
	t.Cleanup(op.front.Close)
	op.SetIssuer(op.front.URL)
	return op
}

// Issuer is the issuer to configure: the front URL.
func (op *logoutOP) Issuer() string { return op.front.URL }

func (op *logoutOP) config() Config {
	return Config{Issuer: op.Issuer(), ClientID: op.ClientID(), ClientSecret: op.ClientSecret()}
}

// EndSession is the end_session_endpoint published.
func (op *logoutOP) EndSession() string {
	op.mu.Lock()
	defer op.mu.Unlock()
	if strings.HasPrefix(op.endSession, "/") {
		return op.front.URL + op.endSession
	}
	return op.endSession
}

// fetchJSON GETs testidp's url into v.
func fetchJSON(r *http.Request, u string, v any) error {
	req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}

func (op *logoutOP) discovery(w http.ResponseWriter, r *http.Request) {
	var doc map[string]any
	if err := fetchJSON(r, op.URL()+"/.well-known/openid-configuration", &doc); err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	doc["issuer"] = op.front.URL
	doc["jwks_uri"] = op.front.URL + "/keys"
	doc["token_endpoint"] = op.front.URL + "/token"
	if es := op.EndSession(); es != "" {
		doc["end_session_endpoint"] = es
		doc["backchannel_logout_supported"] = true
		doc["backchannel_logout_session_supported"] = true
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(doc)
}

func (op *logoutOP) jwks(w http.ResponseWriter, r *http.Request) {
	var set jose.JSONWebKeySet
	if err := fetchJSON(r, op.URL()+"/keys", &set); err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	set.Keys = append(set.Keys, jose.JSONWebKey{Key: op.key.Public(), KeyID: op.kid, Algorithm: string(jose.ES256), Use: "sig"})
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(set)
}

// logoutClaims are the claims of a valid logout token for sub u1 and sid
// s1, issued now.
func (op *logoutOP) logoutClaims() map[string]any {
	now := time.Now()
	return map[string]any{
		"iss":    op.Issuer(),
		"aud":    op.ClientID(),
		"iat":    now.Unix(),
		"exp":    now.Add(2 * time.Minute).Unix(),
		"jti":    "jti-" + randomString(),
		"sub":    "u1",
		"sid":    "s1",
		"events": map[string]any{"http://schemas.openid.net/event/backchannel-logout": map[string]any{}},
	}
}

// signOpts choose how signLogout signs; the zero value signs with the
// published logout key, ES256, typ logout+jwt.
type signOpts struct {
	typ     any // header typ; nil: logout+jwt; "-": none
	foreign bool
	kid     string // "" the logout key's kid
}

// signLogout signs claims as a logout token.
func (op *logoutOP) signLogout(t *testing.T, claims map[string]any, o signOpts) string {
	t.Helper()
	key := op.key
	if o.foreign {
		key = op.foreign
	}
	kid := o.kid
	if kid == "" {
		kid = op.kid
	}
	so := (&jose.SignerOptions{}).WithHeader(jose.HeaderKey("kid"), kid)
	switch o.typ {
	case nil:
		so = so.WithHeader(jose.HeaderType, "logout+jwt")
	case "-":
	default:
		so = so.WithHeader(jose.HeaderType, o.typ)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, so)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// logoutPOST is the back-channel request carrying form.
func logoutPOST(form url.Values) *http.Request {
	r := httptest.NewRequest(http.MethodPost, logoutURL, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return r
}

const logoutURL = "https://broker.example/logout/up"
