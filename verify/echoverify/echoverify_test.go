package echoverify_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"
	"github.com/labstack/echo/v4"

	"github.com/fedbroker/fedbroker/verify"
	"github.com/fedbroker/fedbroker/verify/echoverify"
)

const (
	audience = "orders-api"
	kid      = "test-key"
	realm    = `Bearer realm="orders-api"`
)

// now is the verifier's (fixed) clock and the issue time of test tokens.
var now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// issuer serves discovery and a one-key JWKS on httptest and signs tokens
// with that key.
type issuer struct {
	url string
	key *ecdsa.PrivateKey
}

func newIssuer(t *testing.T) *issuer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	is := &issuer{key: key}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": is.url, "jwks_uri": is.url + "/keys"})
	})
	mux.HandleFunc("GET /keys", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
			{Key: key.Public(), KeyID: kid, Algorithm: string(jose.ES256), Use: "sig"},
		}})
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	is.url = srv.URL
	return is
}

// verifier returns a Verifier for the issuer at the fixed clock.
func (is *issuer) verifier(t *testing.T) *verify.Verifier {
	t.Helper()
	v, err := verify.New(t.Context(), is.url, audience, verify.WithClock(func() time.Time { return now }))
	if err != nil {
		t.Fatalf("verify.New: %v", err)
	}
	t.Cleanup(v.Close)
	return v
}

// token signs valid access token claims, changed by mutate when not nil,
// with the given typ header.
func (is *issuer) token(t *testing.T, typ string, mutate func(map[string]any)) string {
	t.Helper()
	claims := map[string]any{
		"iss":   is.url,
		"sub":   "user-123",
		"aud":   []string{audience},
		"exp":   now.Add(5 * time.Minute).Unix(),
		"iat":   now.Unix(),
		"scope": "openid orders:read orders:write",
	}
	if mutate != nil {
		mutate(claims)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: is.key, KeyID: kid}},
		(&jose.SignerOptions{}).WithType(jose.ContentType(typ)))
	if err != nil {
		t.Fatal(err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	s, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type testCase struct {
	name       string
	header     []string // Authorization values
	target     string
	wantStatus int
	wantAuth   string // WWW-Authenticate, exact
	wantError  string // "error" in the JSON body
	wantSub    string // subject the handler saw, on success
}

func (tt testCase) request() *http.Request {
	target := tt.target
	if target == "" {
		target = "/orders"
	}
	r := httptest.NewRequest(http.MethodGet, target, nil)
	for _, h := range tt.header {
		r.Header.Add("Authorization", h)
	}
	return r
}

func cases(t *testing.T, is *issuer) []testCase {
	good := is.token(t, "at+jwt", nil)
	return []testCase{
		{name: "valid", header: []string{"Bearer " + good}, wantStatus: 200, wantSub: "user-123"},
		{name: "lower-case scheme", header: []string{"bearer " + good}, wantStatus: 200, wantSub: "user-123"},
		{name: "no header", wantStatus: 401, wantAuth: realm, wantError: "unauthorized"},
		{name: "token in query only", target: "/orders?access_token=" + good, wantStatus: 401, wantAuth: realm, wantError: "unauthorized"},
		{name: "basic scheme", header: []string{"Basic dXNlcjpwYXNz"}, wantStatus: 401, wantAuth: realm, wantError: "unauthorized"},
		{name: "bearer without token", header: []string{"Bearer "}, wantStatus: 401, wantAuth: realm, wantError: "unauthorized"},
		{
			name: "expired",
			header: []string{"Bearer " + is.token(t, "at+jwt", func(c map[string]any) {
				c["exp"] = now.Add(-verify.DefaultLeeway - time.Second).Unix()
			})},
			wantStatus: 401,
			wantAuth:   realm + `, error="invalid_token", error_description="the token expired"`,
			wantError:  "invalid_token",
		},
		{
			name: "ID token", header: []string{"Bearer " + is.token(t, "JWT", nil)}, wantStatus: 401,
			wantAuth:  realm + `, error="invalid_token", error_description="not an access token"`,
			wantError: "invalid_token",
		},
		{
			name: "garbage", header: []string{"Bearer abc.def.ghi"}, wantStatus: 401,
			wantAuth:  realm + `, error="invalid_token", error_description="the token is malformed"`,
			wantError: "invalid_token",
		},
		{
			name:       "missing scope",
			header:     []string{"Bearer " + is.token(t, "at+jwt", func(c map[string]any) { c["scope"] = "orders:read" })},
			wantStatus: 403,
			wantAuth:   realm + `, error="insufficient_scope", error_description="the token lacks a required scope", scope="orders:read orders:write"`,
			wantError:  "insufficient_scope",
		},
		{
			name: "two authorization headers", header: []string{"Bearer " + good, "Bearer " + good}, wantStatus: 400,
			wantAuth:  realm + `, error="invalid_request", error_description="more than one Authorization header"`,
			wantError: "invalid_request",
		},
	}
}

// newEcho returns an echo serving GET /* behind Middleware with the scopes
// orders:read and orders:write; sawSub receives the subject its handler
// read with verify.ClaimsFromContext.
func newEcho(t *testing.T, v *verify.Verifier, sawSub *string) *echo.Echo {
	e := echo.New()
	// An application error handler must not be able to strip the header:
	// the middleware writes its answer itself.
	e.HTTPErrorHandler = func(err error, c echo.Context) { _ = c.String(http.StatusTeapot, "handled") }
	e.GET("/*", func(c echo.Context) error {
		claims, ok := verify.ClaimsFromContext(c.Request().Context())
		if !ok {
			t.Error("ClaimsFromContext() ok = false in a handler behind the middleware")
			return nil
		}
		*sawSub = claims.Subject
		return c.NoContent(http.StatusOK)
	}, echoverify.Middleware(v, "orders:read", "orders:write"))
	return e
}

func TestMiddleware(t *testing.T) {
	is := newIssuer(t)
	v := is.verifier(t)
	var sawSub string
	e := newEcho(t, v, &sawSub)
	for _, tt := range cases(t, is) {
		t.Run(tt.name, func(t *testing.T) {
			sawSub = ""
			rec := httptest.NewRecorder()
			e.ServeHTTP(rec, tt.request())
			if rec.Code != tt.wantStatus {
				t.Fatalf("status = %d, want %d (body %s)", rec.Code, tt.wantStatus, rec.Body)
			}
			if got := rec.Header().Get("WWW-Authenticate"); got != tt.wantAuth {
				t.Errorf("WWW-Authenticate = %q, want %q", got, tt.wantAuth)
			}
			if sawSub != tt.wantSub {
				t.Errorf("handler saw subject %q, want %q", sawSub, tt.wantSub)
			}
			if tt.wantStatus == http.StatusOK {
				return
			}
			var body map[string]string
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatalf("body %q is not JSON: %v", rec.Body, err)
			}
			if body["error"] != tt.wantError {
				t.Errorf("body error = %q, want %q", body["error"], tt.wantError)
			}
			if got := rec.Header().Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control = %q, want no-store", got)
			}
		})
	}
}

// TestMiddlewareAnswersLikeNetHTTP checks that every refusal is byte for
// byte the answer of the net/http middleware.
func TestMiddlewareAnswersLikeNetHTTP(t *testing.T) {
	is := newIssuer(t)
	v := is.verifier(t)
	var sawSub string
	e := newEcho(t, v, &sawSub)
	std := v.Middleware("orders:read", "orders:write")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
	}))
	type answer struct {
		Status int
		Header map[string]string
		Body   string
	}
	read := func(rec *httptest.ResponseRecorder) answer {
		a := answer{Status: rec.Code, Header: map[string]string{}, Body: rec.Body.String()}
		for _, h := range []string{"WWW-Authenticate", "Content-Type", "Cache-Control"} {
			a.Header[h] = rec.Header().Get(h)
		}
		return a
	}
	for _, tt := range cases(t, is) {
		if tt.wantStatus == http.StatusOK {
			continue
		}
		t.Run(tt.name, func(t *testing.T) {
			want := httptest.NewRecorder()
			std.ServeHTTP(want, tt.request())
			got := httptest.NewRecorder()
			e.ServeHTTP(got, tt.request())
			if diff := cmp.Diff(read(want), read(got)); diff != "" {
				t.Errorf("echo answer differs from net/http answer (-net/http +echo):\n%s", diff)
			}
		})
	}
}

func TestMiddlewareReturnsHandlerError(t *testing.T) {
	is := newIssuer(t)
	v := is.verifier(t)
	e := echo.New()
	var handled error
	e.HTTPErrorHandler = func(err error, c echo.Context) {
		handled = err
		_ = c.NoContent(http.StatusConflict)
	}
	wantErr := errors.New("order locked")
	e.DELETE("/orders/:id", func(c echo.Context) error { return wantErr }, echoverify.Middleware(v))
	r := httptest.NewRequest(http.MethodDelete, "/orders/7", nil)
	r.Header.Set("Authorization", "Bearer "+is.token(t, "at+jwt", nil))
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, r)
	if !errors.Is(handled, wantErr) {
		t.Errorf("HTTPErrorHandler got %v, want the handler's error %v", handled, wantErr)
	}
	if rec.Code != http.StatusConflict {
		t.Errorf("status = %d, want %d from the error handler", rec.Code, http.StatusConflict)
	}
}
