package authflow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/oauth"
	"github.com/fedbroker/fedbroker/broker/observe"
	"github.com/fedbroker/fedbroker/broker/runtime"
	"github.com/fedbroker/fedbroker/broker/runtime/runtimetest"
	"github.com/fedbroker/fedbroker/broker/storage"
	"github.com/fedbroker/fedbroker/broker/tokens"
	"github.com/fedbroker/fedbroker/templates"
)

// authzFixture is a Flow over runtimetest's configuration (client app:
// public, PKCE, redirect http://127.0.0.1:9999/cb, one connector "local").
type authzFixture struct {
	*runtimetest.Fixture
	flow *Flow
}

func newAuthzFixture(tb testing.TB) authzFixture {
	tb.Helper()
	f := runtimetest.New(tb, "", nil)
	tmpl, err := templates.New()
	if err != nil {
		tb.Fatal(err)
	}
	a := tokens.New(tokens.Deps{Issuer: runtimetest.Issuer, Keys: f.Keys, Store: f.Store, Now: f.Clock.Now})
	sealer, _ := tokens.NewSealer(nil)
	flow := New(Deps{
		Issuer: runtimetest.Issuer, Store: f.Store, Tokens: a, Sealer: sealer, Now: f.Clock.Now,
		Metrics: observe.NewMetrics(prometheus.NewRegistry()), Health: observe.NewHealth(),
		Pages:   &oauth.Writer{Issuer: runtimetest.Issuer, Templates: tmpl, Log: slog.New(slog.DiscardHandler)},
		Runtime: func() *runtime.Runtime { return f.Runtime },
	})
	return authzFixture{f, flow}
}

const validChallenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"

// validAuthorize is a request app may make; extra are key, value pairs set
// on it.
func validAuthorize(extra ...string) url.Values {
	v := url.Values{
		"client_id": {"app"}, "redirect_uri": {"http://127.0.0.1:9999/cb"}, "response_type": {"code"},
		"scope": {"openid email"}, "state": {"st"}, "nonce": {"n"},
		"code_challenge": {validChallenge}, "code_challenge_method": {"S256"},
	}
	for i := 0; i+1 < len(extra); i += 2 {
		v.Set(extra[i], extra[i+1])
	}
	return v
}

// storedRequest returns the auth request a successful Authorize stored.
func (f authzFixture) storedRequest(t testing.TB, res Result) storage.AuthRequest {
	t.Helper()
	u, err := url.Parse(res.Redirect)
	if err != nil || !strings.HasPrefix(u.Path, "/login") || u.Query().Get("req") == "" {
		t.Fatalf("Authorize = %+v; want the login page with a req", res)
	}
	req, err := f.Store.GetAuthRequest(context.Background(), u.Query().Get("req"))
	if err != nil {
		t.Fatalf("GetAuthRequest: %v", err)
	}
	return req
}

func wantPageError(t *testing.T, err error, status int) *oauth.PageError {
	t.Helper()
	var re *oauth.RedirectError
	if errors.As(err, &re) {
		t.Fatalf("Authorize = redirect error %q to %s with state of %d bytes; want an error page", re.Code, re.RedirectURI, len(re.State))
	}
	var pe *oauth.PageError
	if !errors.As(err, &pe) || pe.Status != status {
		t.Fatalf("Authorize = %v; want a %d error page", err, status)
	}
	return pe
}

// Finding 2: a state that is too long or not VSCHAR (RFC 6749 Appendix A)
// is never carried back in a redirect, whatever else is wrong with the
// request; a valid state always is.
func TestAuthorizeRefusesBadStateWithAPage(t *testing.T) {
	f := newAuthzFixture(t)
	ctx := context.Background()
	bad := map[string]string{
		"too long":      strings.Repeat("s", 2049),
		"far too long":  strings.Repeat("s", 1<<20),
		"NUL":           "st\x00ate",
		"newline":       "st\r\nLocation: https://evil.example/",
		"DEL":           "st\x7f",
		"tab":           "\tst",
		"non-ASCII":     "état",
		"invalid UTF-8": "st\xff",
	}
	// Each of these would otherwise be a redirect error.
	others := [][]string{
		nil,
		{"response_type", "token"},
		{"request", "x.y.z"},
		{"request_uri", "https://evil.example/r"},
		{"scope", "email"},
		{"prompt", "none"},
		{"nonce", strings.Repeat("n", 600)},
	}
	for name, state := range bad {
		for _, other := range others {
			t.Run(fmt.Sprintf("%s/%v", name, other), func(t *testing.T) {
				form := validAuthorize(other...)
				form.Set("state", state)
				_, err := f.flow.Authorize(ctx, f.Runtime, form, Browser{RemoteIP: "192.0.2.1"})
				if pe := wantPageError(t, err, http.StatusBadRequest); pe.Code != oauth.ErrInvalidRequest || strings.Contains(pe.Message, state) {
					t.Fatalf("page = %+v; want invalid_request without the state", pe)
				}
			})
		}
	}
	// The longest state of every allowed character goes back unchanged.
	var vschar strings.Builder
	for c := byte(0x20); c <= 0x7e; c++ {
		vschar.WriteByte(c)
	}
	good := (vschar.String() + strings.Repeat("x", 2048))[:2048]
	_, err := f.flow.Authorize(ctx, f.Runtime, validAuthorize("state", good, "response_type", "token"), Browser{RemoteIP: "192.0.2.1"})
	var re *oauth.RedirectError
	if !errors.As(err, &re) || re.State != good || re.Code != oauth.ErrUnsupportedResponseType {
		t.Fatalf("Authorize with a 2048-byte VSCHAR state = %v; want a redirect error carrying it", err)
	}
}

// Finding 1: every parameter that would be stored with the auth request
// is bounded; a request over a bound is refused and stores nothing.
func TestAuthorizeRefusesUnboundedParameters(t *testing.T) {
	f := newAuthzFixture(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name, key, value, code string
	}{
		{"huge login_hint", "login_hint", strings.Repeat("a", 1<<20) + "@acme.com", oauth.ErrInvalidRequest},
		{"long login_hint", "login_hint", strings.Repeat("a", 248) + "@acme.com", oauth.ErrInvalidRequest},
		{"login_hint with NUL", "login_hint", "alice\x00@acme.com", oauth.ErrInvalidRequest},
		{"login_hint not UTF-8", "login_hint", "alice\xff@acme.com", oauth.ErrInvalidRequest},
		{"huge prompt", "prompt", strings.Repeat("login ", 100000), oauth.ErrInvalidRequest},
		{"huge nonce", "nonce", strings.Repeat("n", 1<<20), oauth.ErrInvalidRequest},
		{"nonce not UTF-8", "nonce", "n\xff", oauth.ErrInvalidRequest},
		{"max_age with a sign", "max_age", "+60", oauth.ErrInvalidRequest},
		{"max_age with spaces", "max_age", " 60", oauth.ErrInvalidRequest},
		{"max_age too many digits", "max_age", "10000000000", oauth.ErrInvalidRequest},
		{"max_age overflowing", "max_age", "9223372036854775807", oauth.ErrInvalidRequest},
		{"huge max_age", "max_age", strings.Repeat("9", 1<<16), oauth.ErrInvalidRequest},
		{"code_challenge too long", "code_challenge", validChallenge + "A", oauth.ErrInvalidRequest},
		{"huge code_challenge", "code_challenge", strings.Repeat("A", 1<<20), oauth.ErrInvalidRequest},
		{"scope repeated a thousand times", "scope", strings.Repeat("openid ", 1000), oauth.ErrInvalidScope},
		{"huge scope", "scope", "openid " + strings.Repeat("e", 1<<20), oauth.ErrInvalidScope},
		{"huge connector_id", "connector_id", strings.Repeat("c", 1<<20), oauth.ErrInvalidRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.flow.Authorize(ctx, f.Runtime, validAuthorize(tc.key, tc.value), Browser{RemoteIP: "192.0.2.1"})
			var re *oauth.RedirectError
			if !errors.As(err, &re) || re.Code != tc.code || re.State != "st" {
				t.Fatalf("Authorize(%s of %d bytes) = %v; want a redirect error %s", tc.key, len(tc.value), err, tc.code)
			}
			if len(re.Description) > 200 {
				t.Fatalf("the error description echoes %d bytes", len(re.Description))
			}
		})
	}
	// Before the client's redirect_uri is trusted, an error page.
	for _, tc := range []struct {
		name, key, value string
	}{
		{"huge client_id", "client_id", strings.Repeat("c", 1<<20)},
		// MatchRedirect lets a loopback redirect vary its port: digits
		// only, of any length.
		{"loopback port of a megabyte", "redirect_uri", "http://127.0.0.1:" + strings.Repeat("0", 1<<20) + "9999/cb"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.flow.Authorize(ctx, f.Runtime, validAuthorize(tc.key, tc.value), Browser{RemoteIP: "192.0.2.1"})
			wantPageError(t, err, http.StatusBadRequest)
		})
	}
}

// Finding 1: prompt stores only the values OpenID Connect Core §3.1.2.1
// defines; unknown values (prompt=create, ...) are ignored, as OAuth
// ignores what it does not understand, and none still stands alone.
func TestAuthorizeStoresOnlyKnownPromptValues(t *testing.T) {
	f := newAuthzFixture(t)
	ctx := context.Background()
	for prompt, want := range map[string]string{
		"create": "",
		"login create " + strings.Repeat("x", 60): "login",
		"consent select_account login login":      "consent select_account login",
		"LOGIN":                                   "",
	} {
		res, err := f.flow.Authorize(ctx, f.Runtime, validAuthorize("prompt", prompt), Browser{RemoteIP: "192.0.2.1"})
		if err != nil {
			t.Fatalf("Authorize(prompt=%q) = %v", prompt, err)
		}
		if got := f.storedRequest(t, res).Prompt; got != want {
			t.Errorf("prompt=%q stored as %q, want %q", prompt, got, want)
		}
	}
	_, err := f.flow.Authorize(ctx, f.Runtime, validAuthorize("prompt", "none create"), Browser{RemoteIP: "192.0.2.1"})
	var re *oauth.RedirectError
	if !errors.As(err, &re) || re.Code != oauth.ErrInvalidRequest {
		t.Fatalf("prompt=none with another value = %v; want invalid_request", err)
	}
}

// Finding 1: the largest request Authorize accepts stores a small record,
// and the password page echoes only the bounded login_hint.
func TestAuthorizeStoredRequestIsSmall(t *testing.T) {
	f := newAuthzFixture(t)
	ctx := context.Background()
	form := validAuthorize(
		"state", strings.Repeat("s", 2048),
		"nonce", strings.Repeat("n", 512),
		"login_hint", strings.Repeat("a", 247)+"@acme.com",
		"prompt", "login consent select_account "+strings.Repeat("x", 90),
		"max_age", "999999999",
		"scope", "openid email profile groups offline_access openid email",
		"connector_id", "local",
		"redirect_uri", "http://127.0.0.1:65535/cb",
	)
	res, err := f.flow.Authorize(ctx, f.Runtime, form, Browser{RemoteIP: "192.0.2.1"})
	if err != nil {
		t.Fatalf("Authorize with every parameter at its bound = %v", err)
	}
	req := f.storedRequest(t, res)
	body, _ := json.Marshal(req)
	if len(body) > 8<<10 {
		t.Fatalf("stored auth request is %d bytes, want at most 8 KiB", len(body))
	}
	if req.MaxAge != 999999999 || len(req.LoginHint) != 256 || len(req.State) != 2048 {
		t.Fatalf("stored request lost a value: max_age %d, login_hint %d bytes, state %d bytes", req.MaxAge, len(req.LoginHint), len(req.State))
	}
	login, err := f.flow.StartLogin(ctx, f.Runtime, "local", req.ID, Browser{BrowserID: res.BrowserID})
	if err != nil || login.Template != "password.html" {
		t.Fatalf("StartLogin = %+v, %v", login, err)
	}
	rec := httptest.NewRecorder()
	if err := f.flow.pages.Render(rec, login.Status, login.Template, login.Data); err != nil {
		t.Fatal(err)
	}
	if rec.Body.Len() > 16<<10 {
		t.Fatalf("the password page is %d bytes", rec.Body.Len())
	}
}

// signIn signs alice in at the local connector from browser b and returns
// b with its cookies.
func (f authzFixture) signIn(t testing.TB, b Browser) Browser {
	t.Helper()
	ctx := context.Background()
	res, err := f.flow.Authorize(ctx, f.Runtime, validAuthorize(), b)
	if err != nil {
		t.Fatalf("Authorize: %v", err)
	}
	req := f.storedRequest(t, res)
	b.BrowserID = res.BrowserID
	login, err := f.flow.StartLogin(ctx, f.Runtime, "local", req.ID, b)
	if err != nil {
		t.Fatalf("StartLogin: %v", err)
	}
	data := login.Data.(templates.PasswordData)
	out, err := f.flow.PasswordLogin(ctx, f.Runtime, "local", PasswordForm{
		RequestID: req.ID, CSRF: data.CSRF, Username: "alice", Password: runtimetest.AlicePassword, RemoteIP: b.RemoteIP,
	}, b)
	if err != nil || out.Session == nil {
		t.Fatalf("PasswordLogin = %+v, %v; want a session", out, err)
	}
	b.SessionID = out.Session.ID
	return b
}

func tooManyRequests(err error) bool {
	var pe *oauth.PageError
	return errors.As(err, &pe) && pe.Status == http.StatusTooManyRequests && pe.Code == "too_many_requests"
}

// Finding 1: one address may start a burst of 60 pending sign-ins, then one
// per 10 s; other addresses are not affected; an SSO answer stores no
// pending sign-in and is not limited; IPv6 addresses count per /64.
func TestAuthorizeLimitsPendingRequestsPerAddress(t *testing.T) {
	f := newAuthzFixture(t)
	ctx := context.Background()
	attacker := f.signIn(t, Browser{RemoteIP: "198.51.100.7"})
	signedIn := attacker
	attacker.SessionID = ""
	for i := range 59 {
		if _, err := f.flow.Authorize(ctx, f.Runtime, validAuthorize(), attacker); err != nil {
			t.Fatalf("request %d from one address: %v", i+2, err)
		}
	}
	_, err := f.flow.Authorize(ctx, f.Runtime, validAuthorize(), attacker)
	if !tooManyRequests(err) {
		t.Fatalf("61st pending request from one address = %v; want a 429 too_many_requests page", err)
	}
	if res, err := f.flow.Authorize(ctx, f.Runtime, validAuthorize(), signedIn); err != nil || !strings.Contains(res.Redirect, "code=") {
		t.Fatalf("SSO from a throttled address = %+v, %v; want a code at once", res, err)
	}
	// An error the client should see still goes back to it.
	if _, err := f.flow.Authorize(ctx, f.Runtime, validAuthorize("response_type", "token"), attacker); !errors.As(err, new(*oauth.RedirectError)) {
		t.Fatalf("a bad request from a throttled address = %v; want its redirect error", err)
	}
	if res, err := f.flow.Authorize(ctx, f.Runtime, validAuthorize(), Browser{RemoteIP: "198.51.100.8"}); err != nil || res.Redirect == "" {
		t.Fatalf("another address = %+v, %v; want the login page", res, err)
	}
	f.Clock.Advance(10 * time.Second)
	if _, err := f.flow.Authorize(ctx, f.Runtime, validAuthorize(), attacker); err != nil {
		t.Fatalf("after 10 s: %v; want one more", err)
	}
	if _, err := f.flow.Authorize(ctx, f.Runtime, validAuthorize(), attacker); !tooManyRequests(err) {
		t.Fatalf("the second after 10 s = %v; want 429", err)
	}

	for i := range 60 {
		ip := fmt.Sprintf("2001:db8:1:2::%x", i+1)
		if _, err := f.flow.Authorize(ctx, f.Runtime, validAuthorize(), Browser{RemoteIP: ip}); err != nil {
			t.Fatalf("request %d from one /64: %v", i+1, err)
		}
	}
	if _, err := f.flow.Authorize(ctx, f.Runtime, validAuthorize(), Browser{RemoteIP: "2001:db8:1:2:ffff::1"}); !tooManyRequests(err) {
		t.Fatalf("61st request from one IPv6 /64 = %v; want 429", err)
	}
	if _, err := f.flow.Authorize(ctx, f.Runtime, validAuthorize(), Browser{RemoteIP: "2001:db8:1:3::1"}); err != nil {
		t.Fatalf("the next /64 = %v", err)
	}
	// An IPv4-mapped IPv6 address is the IPv4 address.
	if _, err := f.flow.Authorize(ctx, f.Runtime, validAuthorize(), Browser{RemoteIP: "::ffff:198.51.100.7"}); !tooManyRequests(err) {
		t.Fatalf("the throttled address written as IPv4-mapped IPv6 = %v; want 429", err)
	}
}

// Finding 1: the limiter forgets addresses whose bucket is full again, so
// its memory follows recent traffic only.
func TestPendingLimiterForgetsIdleAddresses(t *testing.T) {
	clk := runtimetest.NewClock(time.Now())
	l := newPendingLimiter(clk.Now, config.DefaultSignInLimit)
	for i := range 1000 {
		if !l.take(fmt.Sprintf("203.0.113.%d", i%250) + fmt.Sprint(i/250)) {
			t.Fatal("a fresh address was refused")
		}
	}
	if l.size() == 0 {
		t.Fatal("the limiter tracks nothing")
	}
	clk.Advance(time.Duration(config.DefaultSignInLimit.Burst)*config.DefaultSignInLimit.Every + time.Minute)
	l.take("192.0.2.200")
	if n := l.size(); n != 1 {
		t.Fatalf("after every bucket refilled the limiter tracks %d addresses, want 1", n)
	}
}

// echoServer serves /authorize as the broker does: the trusted address
// from the connection, errors written by the one oauth.Writer.
func (f authzFixture) echoServer() *echo.Echo {
	e := echo.New()
	e.IPExtractor = echo.ExtractIPDirect()
	e.HTTPErrorHandler = func(err error, c echo.Context) {
		f.flow.pages.Write(c.Response(), c.Request(), err, false)
	}
	e.GET("/authorize", f.flow.HandleAuthorize)
	e.POST("/authorize", f.flow.HandleAuthorize)
	return e
}

// Finding 1 over HTTP: the body of a POST to /authorize is capped with a
// readable page, and the address comes from echo's RealIP.
func TestHandleAuthorizeCapsTheRequest(t *testing.T) {
	f := newAuthzFixture(t)
	e := f.echoServer()
	post := func(addr string, body string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodPost, "/authorize", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.RemoteAddr = addr + ":40000"
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, r)
		return rec
	}
	huge := validAuthorize().Encode() + "&padding=" + strings.Repeat("p", 10<<20)
	rec := post("192.0.2.10", huge)
	if rec.Code != http.StatusRequestEntityTooLarge || rec.Header().Get("Location") != "" ||
		!strings.Contains(rec.Header().Get("Content-Type"), "text/html") || !strings.Contains(rec.Body.String(), "too large") {
		t.Fatalf("POST of 10 MB = %d %q; want a readable 413 page", rec.Code, rec.Body.String())
	}
	if rec := post("192.0.2.10", validAuthorize().Encode()); rec.Code != http.StatusSeeOther || !strings.HasPrefix(rec.Header().Get("Location"), "/login/local?req=") {
		t.Fatalf("a small POST = %d %q; want 303 to the login", rec.Code, rec.Header().Get("Location"))
	}
	r := httptest.NewRequest(http.MethodGet, "/authorize?"+validAuthorize().Encode()+"&padding="+strings.Repeat("p", 100<<10), nil)
	rec = httptest.NewRecorder()
	e.ServeHTTP(rec, r)
	if rec.Code != http.StatusRequestURITooLong || rec.Header().Get("Location") != "" || !strings.Contains(rec.Body.String(), "too large") {
		t.Fatalf("GET with a 100 KiB query = %d; want a readable 414 page", rec.Code)
	}

	// The burst is per address as RealIP reports it; a forged
	// X-Forwarded-For does not move it.
	for i := range 59 {
		if rec := post("192.0.2.11", validAuthorize().Encode()); rec.Code != http.StatusSeeOther {
			t.Fatalf("POST %d = %d", i+1, rec.Code)
		}
	}
	r = httptest.NewRequest(http.MethodPost, "/authorize", strings.NewReader(validAuthorize().Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("X-Forwarded-For", "203.0.113.99")
	r.RemoteAddr = "192.0.2.11:40001"
	rec = httptest.NewRecorder()
	e.ServeHTTP(rec, r)
	if rec.Code != http.StatusSeeOther {
		t.Fatalf("60th POST = %d", rec.Code)
	}
	rec = post("192.0.2.11", validAuthorize().Encode())
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Location") != "" || !strings.Contains(rec.Body.String(), "too_many_requests") {
		t.Fatalf("61st POST from one address = %d %q; want a readable 429 page", rec.Code, rec.Body.String())
	}
	if rec := post("192.0.2.12", validAuthorize().Encode()); rec.Code != http.StatusSeeOther {
		t.Fatalf("POST from another address = %d; want 303", rec.Code)
	}

	// A request whose address echo cannot tell is limited too (all such
	// requests share one budget).
	noAddr := func() int {
		r := httptest.NewRequest(http.MethodGet, "/authorize?"+validAuthorize().Encode(), nil)
		r.RemoteAddr = ""
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, r)
		return rec.Code
	}
	for i := range 60 {
		if code := noAddr(); code != http.StatusFound {
			t.Fatalf("GET %d without an address = %d", i+1, code)
		}
	}
	if code := noAddr(); code != http.StatusTooManyRequests {
		t.Fatalf("61st GET without an address = %d, want 429", code)
	}
}

// The sign-in limit is the configured one (http.sign_in_limit).
func TestPendingLimiterTakesTheConfiguredLimit(t *testing.T) {
	clk := runtimetest.NewClock(time.Now())
	l := newPendingLimiter(clk.Now, config.RateLimit{Burst: 2, Every: time.Minute})
	for i := range 2 {
		if !l.take("192.0.2.1") {
			t.Fatalf("sign-in %d within the burst of 2 was refused", i+1)
		}
	}
	if l.take("192.0.2.1") {
		t.Fatal("a third sign-in within the burst of 2 was admitted")
	}
	clk.Advance(59 * time.Second)
	if l.take("192.0.2.1") {
		t.Fatal("one more before the interval of 1m was admitted")
	}
	clk.Advance(time.Second)
	if !l.take("192.0.2.1") {
		t.Fatal("one more after the interval of 1m was refused")
	}
}
