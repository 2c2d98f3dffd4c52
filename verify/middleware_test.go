package verify

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

type middlewareCase struct {
	name       string
	header     []string // Authorization values
	target     string
	wantStatus int
	wantAuth   string // WWW-Authenticate, exact
	wantError  string // "error" in the JSON body
	wantSub    string // subject the handler saw, on success
}

func middlewareCases(is *testIssuer, k testKey, t *testing.T) []middlewareCase {
	good := sign(t, k, "at+jwt", is.claims())
	readOnly := is.claims()
	readOnly["scope"] = "orders:read"
	expired := is.claims()
	expired["exp"] = is.clock.now().Add(-DefaultLeeway - time.Second).Unix()
	const realm = `Bearer realm="orders-api"`
	return []middlewareCase{
		{name: "valid", header: []string{"Bearer " + good}, wantStatus: 200, wantSub: "user-123"},
		{name: "lower-case scheme", header: []string{"bearer " + good}, wantStatus: 200, wantSub: "user-123"},
		{name: "no header", wantStatus: 401, wantAuth: realm, wantError: "unauthorized"},
		{name: "token in query only", target: "/?access_token=" + good, wantStatus: 401, wantAuth: realm, wantError: "unauthorized"},
		{name: "basic scheme", header: []string{"Basic dXNlcjpwYXNz"}, wantStatus: 401, wantAuth: realm, wantError: "unauthorized"},
		{name: "bearer without token", header: []string{"Bearer "}, wantStatus: 401, wantAuth: realm, wantError: "unauthorized"},
		{
			name: "expired", header: []string{"Bearer " + sign(t, k, "at+jwt", expired)}, wantStatus: 401,
			wantAuth:  realm + `, error="invalid_token", error_description="the token expired"`,
			wantError: "invalid_token",
		},
		{
			name: "ID token", header: []string{"Bearer " + sign(t, k, "JWT", is.claims())}, wantStatus: 401,
			wantAuth:  realm + `, error="invalid_token", error_description="not an access token"`,
			wantError: "invalid_token",
		},
		{
			name: "garbage", header: []string{"Bearer abc.def.ghi"}, wantStatus: 401,
			wantAuth:  realm + `, error="invalid_token", error_description="the token is malformed"`,
			wantError: "invalid_token",
		},
		{
			name: "missing scope", header: []string{"Bearer " + sign(t, k, "at+jwt", readOnly)}, wantStatus: 403,
			wantAuth:  realm + `, error="insufficient_scope", error_description="the token lacks a required scope", scope="orders:read orders:write"`,
			wantError: "insufficient_scope",
		},
		{
			name: "two authorization headers", header: []string{"Bearer " + good, "Bearer " + good}, wantStatus: 400,
			wantAuth:  realm + `, error="invalid_request", error_description="more than one Authorization header"`,
			wantError: "invalid_request",
		},
	}
}

func checkResponse(t *testing.T, tt middlewareCase, rec *httptest.ResponseRecorder, sawSub string) {
	t.Helper()
	if rec.Code != tt.wantStatus {
		t.Fatalf("status = %d, want %d (body %s)", rec.Code, tt.wantStatus, rec.Body)
	}
	if got := rec.Header().Get("WWW-Authenticate"); got != tt.wantAuth {
		t.Errorf("WWW-Authenticate = %q, want %q", got, tt.wantAuth)
	}
	if sawSub != tt.wantSub {
		t.Errorf("handler saw subject %q, want %q", sawSub, tt.wantSub)
	}
	if tt.wantStatus == 200 {
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
}

func newRequest(tt middlewareCase) *http.Request {
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

func TestMiddleware(t *testing.T) {
	is, k, v, _ := setup(t)
	for _, tt := range middlewareCases(is, k, t) {
		t.Run(tt.name, func(t *testing.T) {
			var sawSub string
			h := v.Middleware("orders:read", "orders:write")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				c, ok := ClaimsFromContext(r.Context())
				if !ok {
					t.Error("ClaimsFromContext() ok = false in a handler behind the middleware")
					return
				}
				sawSub = c.Subject
			}))
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, newRequest(tt))
			checkResponse(t, tt, rec, sawSub)
		})
	}
}

func TestMiddlewareRealm(t *testing.T) {
	_, _, v, _ := setup(t, WithRealm("orders"))
	rec := httptest.NewRecorder()
	v.Middleware()(http.NotFoundHandler()).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	if diff := cmp.Diff(`Bearer realm="orders"`, rec.Header().Get("WWW-Authenticate")); diff != "" {
		t.Errorf("WWW-Authenticate mismatch (-want +got):\n%s", diff)
	}
}

func TestClaimsFromContextEmpty(t *testing.T) {
	if c, ok := ClaimsFromContext(t.Context()); ok || c != nil {
		t.Errorf("ClaimsFromContext(empty) = %v, %v, want nil, false", c, ok)
	}
}
