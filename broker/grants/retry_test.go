package grants_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/fedbroker/fedbroker/broker/clientauth"
	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/grants"
	"github.com/fedbroker/fedbroker/broker/oauth"
	"github.com/fedbroker/fedbroker/broker/observe"
	"github.com/fedbroker/fedbroker/broker/runtime"
	"github.com/fedbroker/fedbroker/broker/runtime/runtimetest"
	"github.com/fedbroker/fedbroker/broker/tokens"
)

// retryEndpoint is the token endpoint of a fixture whose sealer has a
// key-encryption key (refresh retries keep the successor sealed, so they
// need one), behind echo with the broker's error writing.
func retryEndpoint(t *testing.T, mutate func(*config.Config)) endpoint {
	t.Helper()
	f := runtimetest.New(t, "", mutate)
	a := tokens.New(tokens.Deps{Issuer: runtimetest.Issuer, Keys: f.Keys, Store: f.Store, Now: f.Clock.Now})
	sealer, err := tokens.NewSealer(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	var audit bytes.Buffer
	g := grants.New(grants.Deps{Tokens: a, Sealer: sealer, Store: f.Store, Now: f.Clock.Now, Audit: observe.NewAudit(slog.New(slog.NewJSONHandler(&audit, nil)))})
	ep := &grants.Endpoint{
		Grants:  g,
		Clients: clientauth.New(clientauth.Deps{Issuer: runtimetest.Issuer, Replay: f.Store, Now: f.Clock.Now}),
		Runtime: func() *runtime.Runtime { return f.Runtime },
	}
	w := &oauth.Writer{Issuer: runtimetest.Issuer, Log: slog.New(slog.DiscardHandler)}
	e := echo.New()
	e.HTTPErrorHandler = func(err error, c echo.Context) {
		if !c.Response().Committed {
			w.Write(c.Response(), c.Request(), err, true)
		}
	}
	e.POST("/token", ep.HandleToken)
	return endpoint{fixture{f, g, a, &audit}, e}
}

// tokenResponse is a token endpoint answer: the status and the JSON body.
type tokenResponse struct {
	Status       int
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	IDToken      string `json:"id_token"`
	Scope        string `json:"scope"`
	Error        string `json:"error"`
}

// token posts form to /token as client svc (or as the public client app
// when form has client_id=app).
func (ep endpoint) token(t *testing.T, form url.Values) tokenResponse {
	t.Helper()
	auth := ""
	if form.Get("client_id") == "" {
		auth = "Basic " + base64.StdEncoding.EncodeToString([]byte("svc:"+runtimetest.SvcSecret))
	}
	rec := ep.post("", "application/x-www-form-urlencoded", auth, []byte(form.Encode()))
	var r tokenResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil {
		t.Fatalf("token response %d %q: %v", rec.Code, rec.Body, err)
	}
	r.Status = rec.Code
	return r
}

// signIn redeems a fresh code of svc through the endpoint.
func (ep endpoint) signIn(t *testing.T) tokenResponse {
	t.Helper()
	r := ep.token(t, url.Values{"grant_type": {"authorization_code"}, "code": {ep.code(t, "openid", "offline_access", "email")},
		"redirect_uri": {"https://svc.example.com/callback"}, "code_verifier": {verifier}})
	if r.Status != http.StatusOK || r.RefreshToken == "" {
		t.Fatalf("code redemption = %+v, want 200 with a refresh token", r)
	}
	return r
}

func refreshForm(token string, extra ...string) url.Values {
	v := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {token}}
	for i := 0; i+1 < len(extra); i += 2 {
		v.Set(extra[i], extra[i+1])
	}
	return v
}

func windowOf(d time.Duration) func(*config.Config) {
	return func(c *config.Config) { c.Tokens.RefreshRetryWindow = &d }
}

// TestRefreshRetryAfterLostResponse: the operator's scenario. A refresh
// is stored but its response is lost (the replica died); the client
// retries with the same token within the window and is given the same new
// refresh token, with fresh access and ID tokens, as often as it retries;
// the family lives on.
func TestRefreshRetryAfterLostResponse(t *testing.T) {
	ep := retryEndpoint(t, nil) // the default window, 5s
	first := ep.signIn(t)
	lost := ep.token(t, refreshForm(first.RefreshToken))
	if lost.Status != http.StatusOK || lost.RefreshToken == "" || lost.RefreshToken == first.RefreshToken {
		t.Fatalf("refresh = %+v, want 200 with a new refresh token", lost)
	}
	// The response never reached the client: it retries.
	for i, after := range []time.Duration{time.Second, 2 * time.Second, time.Second} {
		ep.Clock.Advance(after)
		retry := ep.token(t, refreshForm(first.RefreshToken))
		if retry.Status != http.StatusOK || retry.RefreshToken != lost.RefreshToken {
			t.Fatalf("retry #%d within the window = %+v, want 200 with the lost response's refresh token %q", i+1, retry, lost.RefreshToken)
		}
		if retry.AccessToken == "" || retry.IDToken == "" {
			t.Fatalf("retry #%d = %+v, want fresh access and ID tokens", i+1, retry)
		}
		ep.wantLive(t, "access token of the retry", retry.AccessToken)
	}
	if !strings.Contains(ep.audit.String(), `"msg":"refresh_retried"`) {
		t.Errorf("audit = %s, want refresh_retried", ep.audit)
	}
	if strings.Contains(ep.audit.String(), "refresh_reused") {
		t.Errorf("audit = %s, want no refresh_reused", ep.audit)
	}
	// A retry narrowing the scope is answered too; widening it is refused
	// and changes nothing.
	if r := ep.token(t, refreshForm(first.RefreshToken, "scope", "openid")); r.Status != http.StatusOK || r.RefreshToken != lost.RefreshToken || r.Scope != "openid" {
		t.Fatalf("retry with a narrower scope = %+v, want 200, scope openid and the same refresh token", r)
	}
	if r := ep.token(t, refreshForm(first.RefreshToken, "scope", "openid admin")); r.Error != oauth.ErrInvalidScope {
		t.Fatalf("retry with a scope never granted = %+v, want invalid_scope", r)
	}
	// The family is alive: the successor rotates, and every access token
	// of the family still checks.
	next := ep.token(t, refreshForm(lost.RefreshToken))
	if next.Status != http.StatusOK || next.RefreshToken == lost.RefreshToken {
		t.Fatalf("refresh with the retried successor = %+v, want 200 with a new refresh token", next)
	}
	ep.wantLive(t, "access token from the code", first.AccessToken)
	ep.wantLive(t, "access token of the lost response", lost.AccessToken)
	// Once the successor was used, the first token is reuse even within
	// the window: the family dies.
	if r := ep.token(t, refreshForm(first.RefreshToken)); r.Error != oauth.ErrInvalidGrant {
		t.Fatalf("first token after its successor was used = %+v, want invalid_grant", r)
	}
	if r := ep.token(t, refreshForm(next.RefreshToken)); r.Error != oauth.ErrInvalidGrant {
		t.Fatalf("current token after reuse = %+v, want invalid_grant (family revoked)", r)
	}
	ep.wantDead(t, "access token of the last refresh", next.AccessToken)
}

// TestRefreshRetryAfterWindow: past the window the rotated token is reuse
// as before: invalid_grant, the family and its access tokens revoked.
func TestRefreshRetryAfterWindow(t *testing.T) {
	ep := retryEndpoint(t, windowOf(3*time.Second))
	first := ep.signIn(t)
	lost := ep.token(t, refreshForm(first.RefreshToken))
	if lost.Status != http.StatusOK {
		t.Fatalf("refresh = %+v", lost)
	}
	ep.Clock.Advance(3 * time.Second)
	if r := ep.token(t, refreshForm(first.RefreshToken)); r.Error != oauth.ErrInvalidGrant || r.RefreshToken != "" {
		t.Fatalf("retry after the window = %+v, want invalid_grant", r)
	}
	if r := ep.token(t, refreshForm(lost.RefreshToken)); r.Error != oauth.ErrInvalidGrant {
		t.Fatalf("successor after reuse = %+v, want invalid_grant (family revoked)", r)
	}
	ep.wantDead(t, "access token from the code", first.AccessToken)
	ep.wantDead(t, "access token of the lost response", lost.AccessToken)
	if !strings.Contains(ep.audit.String(), "refresh_reused") {
		t.Errorf("audit = %s, want refresh_reused", ep.audit)
	}
}

// TestRefreshRetryWindowZero: tokens.refresh_retry_window: 0s turns
// retries off; a retry at once is reuse, as before.
func TestRefreshRetryWindowZero(t *testing.T) {
	ep := retryEndpoint(t, windowOf(0))
	first := ep.signIn(t)
	lost := ep.token(t, refreshForm(first.RefreshToken))
	if lost.Status != http.StatusOK {
		t.Fatalf("refresh = %+v", lost)
	}
	if r := ep.token(t, refreshForm(first.RefreshToken)); r.Error != oauth.ErrInvalidGrant {
		t.Fatalf("retry with the window off = %+v, want invalid_grant", r)
	}
	if r := ep.token(t, refreshForm(lost.RefreshToken)); r.Error != oauth.ErrInvalidGrant {
		t.Fatalf("successor after reuse = %+v, want invalid_grant (family revoked)", r)
	}
	ep.wantDead(t, "access token of the lost response", lost.AccessToken)
}

// TestRefreshRetryByAnotherClient: within the window, another client
// presenting the rotated token is refused without revoking the family;
// the family's own client still gets its successor.
func TestRefreshRetryByAnotherClient(t *testing.T) {
	ep := retryEndpoint(t, nil)
	first := ep.signIn(t)
	lost := ep.token(t, refreshForm(first.RefreshToken))
	if lost.Status != http.StatusOK {
		t.Fatalf("refresh = %+v", lost)
	}
	if r := ep.token(t, refreshForm(first.RefreshToken, "client_id", "app")); r.Error != oauth.ErrInvalidGrant || r.RefreshToken != "" {
		t.Fatalf("retry by another client = %+v, want invalid_grant", r)
	}
	if !strings.Contains(ep.audit.String(), "refresh_wrong_client") {
		t.Errorf("audit = %s, want refresh_wrong_client", ep.audit)
	}
	if r := ep.token(t, refreshForm(first.RefreshToken)); r.Status != http.StatusOK || r.RefreshToken != lost.RefreshToken {
		t.Fatalf("retry by the family's client = %+v, want the lost refresh token", r)
	}
	ep.wantLive(t, "access token of the lost response", lost.AccessToken)
}

// TestRefreshRetryNeedsAKey: without a key-encryption key the successor
// cannot be sealed, so none is kept (a clear refresh token never goes to
// storage) and a retry is reuse, as before.
func TestRefreshRetryNeedsAKey(t *testing.T) {
	f := newFixture(t) // its sealer has no key
	svc := f.Client(t, "svc")
	first := f.redeem(t, "openid", "offline_access")
	next, err := f.refresh(svc, first.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.refresh(svc, first.RefreshToken); oauthCode(err) != oauth.ErrInvalidGrant {
		t.Fatalf("retry without a key-encryption key = %v, want invalid_grant", err)
	}
	f.wantDead(t, "access token of the rotation", next.AccessToken)
}

// TestRefreshRetryWindowConfig: tokens.refresh_retry_window is a Go
// duration; unset means 5s, 0s turns retries off, and a negative or too
// long window is refused at its YAML path.
func TestRefreshRetryWindowConfig(t *testing.T) {
	const iss = "issuer: https://sso.example.com\n"
	noEnv := func(string) string { return "" }
	for yml, want := range map[string]time.Duration{
		iss: 5 * time.Second,
		iss + "tokens: {refresh_retry_window: 0s}\n":    0,
		iss + "tokens: {refresh_retry_window: 2s}\n":    2 * time.Second,
		iss + "tokens: {refresh_retry_window: 500ms}\n": 500 * time.Millisecond,
	} {
		cfg, err := config.Parse([]byte(yml), noEnv)
		if err != nil {
			t.Fatalf("Parse(%q): %v", yml, err)
		}
		if got := cfg.Tokens.RefreshRetry(); got != want {
			t.Errorf("Parse(%q).Tokens.RefreshRetry() = %v, want %v", yml, got, want)
		}
	}
	for _, bad := range []string{"-1s", "2m", "soon"} {
		_, err := config.Parse([]byte(iss+"tokens: {refresh_retry_window: "+bad+"}\n"), noEnv)
		var ps config.Errors
		if !errors.As(err, &ps) || len(ps) != 1 || ps[0].Path != "tokens.refresh_retry_window" {
			t.Errorf("refresh_retry_window %s: err = %v, want one problem at tokens.refresh_retry_window", bad, err)
		}
	}
}
