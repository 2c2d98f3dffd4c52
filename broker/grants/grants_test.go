package grants_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"log/slog"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/grants"
	"github.com/fedbroker/fedbroker/broker/oauth"
	"github.com/fedbroker/fedbroker/broker/observe"
	"github.com/fedbroker/fedbroker/broker/runtime/runtimetest"
	"github.com/fedbroker/fedbroker/broker/storage"
	"github.com/fedbroker/fedbroker/broker/tokens"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

type fixture struct {
	*runtimetest.Fixture
	g *grants.Grants
	a *tokens.Authority
	// audit holds the audit lines, as JSON.
	audit *bytes.Buffer
}

func newFixture(t *testing.T) fixture { return newFixtureWith(t, "", nil) }

// newFixtureWith is runtimetest.New(t, extra, mutate) with the grants.
func newFixtureWith(t testing.TB, extra string, mutate func(*config.Config)) fixture {
	f := runtimetest.New(t, extra, mutate)
	a := tokens.New(tokens.Deps{Issuer: runtimetest.Issuer, Keys: f.Keys, Store: f.Store, Now: f.Clock.Now})
	sealer, _ := tokens.NewSealer(nil)
	var audit bytes.Buffer
	log := observe.NewAudit(slog.New(slog.NewJSONHandler(&audit, nil)))
	var st storage.Storage = f.Store
	if composedOnly {
		st = composedStore{f.Store}
	}
	return fixture{f, grants.New(grants.Deps{Tokens: a, Sealer: sealer, Store: st, Now: f.Clock.Now, Audit: log}), a, &audit}
}

// composedOnly, while set, gives the grants of newFixtureWith a store
// that hides its storage.GrantStore: the token endpoint then composes the
// single Storage calls, as it does on a store without one step per grant.
var composedOnly bool

// composedStore is a Storage and nothing more.
type composedStore struct{ storage.Storage }

// TestWithoutGrantStore runs the code, refresh, retry, revocation and DPoP
// tests again on a store without storage.GrantStore (every store here has
// one), so that the composed path keeps the guarantees of the one-step
// path: a replayed code revokes its family, reuse revokes, a bound family
// refuses another key, a retry within the window answers again.
func TestWithoutGrantStore(t *testing.T) {
	composedOnly = true
	t.Cleanup(func() { composedOnly = false })
	if _, ok := any(composedStore{newFixture(t).Store}).(storage.GrantStore); ok {
		t.Fatal("composedStore is a storage.GrantStore")
	}
	for name, test := range map[string]func(*testing.T){
		"CodeGrant":                               TestCodeGrant,
		"RefreshReuseRevokesFamily":               TestRefreshReuseRevokesFamily,
		"RefreshReuseDetectedWhateverTheRequest":  TestRefreshReuseDetectedWhateverTheRequest,
		"RefreshRetryAfterLostResponse":           TestRefreshRetryAfterLostResponse,
		"RefreshRetryAfterWindow":                 TestRefreshRetryAfterWindow,
		"RefreshRetryByAnotherClient":             TestRefreshRetryByAnotherClient,
		"DPoPPublicClientBindsTheFamily":          TestDPoPPublicClientBindsTheFamily,
		"DPoPConfidentialClientRefreshIsNotBound": TestDPoPConfidentialClientRefreshIsNotBound,
		"DPoPProofRefused":                        TestDPoPProofRefused,
		"DPoPReplayAcrossReplicas":                TestDPoPReplayAcrossReplicas,
		"DPoPRefreshRetryKeepsTheBinding":         TestDPoPRefreshRetryKeepsTheBinding,
	} {
		t.Run(name, test)
	}
}

// svcExchanges lets client svc exchange tokens of workload issuer ci.
func svcExchanges(c *config.Config) {
	for i := range c.Clients {
		if c.Clients[i].ID == "svc" {
			c.Clients[i].GrantTypes = append(c.Clients[i].GrantTypes, config.GrantTokenExchange)
			c.Clients[i].Workloads = []string{"ci"}
		}
	}
}

// workloadToken signs a fresh workload token of issuer iss with a key no
// one trusts (the issuer's keys are never reachable in these tests).
func workloadToken(t *testing.T, iss string, now time.Time) string {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	signer, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "k1"))
	tok, err := jwt.Signed(signer).Claims(map[string]any{"iss": iss, "sub": "repo:acme/app", "aud": "fedbroker", "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix()}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

const verifier = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFG"

func challenge(v string) string {
	sum := sha256.Sum256([]byte(v))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// code stores a code for client svc as a login would.
func (f fixture) code(t testing.TB, scopes ...string) string {
	t.Helper()
	code := oauth.RandomToken(32)
	ac := storage.AuthCode{
		ClientID: "svc", RedirectURI: "https://svc.example.com/callback",
		CodeChallenge: challenge(verifier), CodeChallengeMethod: "S256", FamilyID: oauth.RandomToken(16),
		Grant:  storage.Grant{ClientID: "svc", Subject: "sub-alice", Scopes: scopes, ConnectorID: "local", AuthTime: f.Clock.Now()},
		Expiry: f.Clock.Now().Add(time.Minute),
	}
	if err := f.Store.CreateCode(context.Background(), code, ac); err != nil {
		t.Fatal(err)
	}
	return code
}

func oauthCode(err error) string {
	var oe *oauth.Error
	if errors.As(err, &oe) {
		return oe.Code
	}
	if err != nil {
		return "non-oauth: " + err.Error()
	}
	return ""
}

func TestParseRequestRefusesRepeats(t *testing.T) {
	if _, err := grants.ParseRequest(url.Values{"grant_type": {"a", "b"}}); oauthCode(err) != oauth.ErrInvalidRequest {
		t.Errorf("repeated grant_type: %v", err)
	}
	req, err := grants.ParseRequest(url.Values{"audience": {"a", "b"}, "resource": {"c"}, "scope": {"x y x"}})
	if err != nil || len(req.Audience) != 2 || strings.Join(req.Scope, " ") != "x y" {
		t.Errorf("ParseRequest = %+v, %v", req, err)
	}
}

func TestCodeGrant(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	svc := f.Client(t, "svc")
	good := grants.Request{GrantType: "authorization_code", RedirectURI: "https://svc.example.com/callback", CodeVerifier: verifier}
	for _, tc := range []struct {
		name string
		edit func(*grants.Request)
		want string
	}{
		{"wrong verifier", func(r *grants.Request) { r.CodeVerifier = strings.Repeat("x", 43) }, oauth.ErrInvalidGrant},
		{"malformed verifier", func(r *grants.Request) { r.CodeVerifier = "short" }, oauth.ErrInvalidGrant},
		{"no verifier", func(r *grants.Request) { r.CodeVerifier = "" }, oauth.ErrInvalidGrant},
		{"other redirect", func(r *grants.Request) { r.RedirectURI = "https://evil.example/cb" }, oauth.ErrInvalidGrant},
		{"unknown code", func(r *grants.Request) { r.Code = "nope" }, oauth.ErrInvalidGrant},
		{"oversized code", func(r *grants.Request) { r.Code = strings.Repeat("c", 200) }, oauth.ErrInvalidRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := good
			req.Code = f.code(t, "openid")
			tc.edit(&req)
			_, err := f.g.Token(ctx, f.Runtime, svc, req)
			if got := oauthCode(err); got != tc.want {
				t.Fatalf("Token = %v, want %s", err, tc.want)
			}
		})
	}
	t.Run("another client", func(t *testing.T) {
		req := good
		req.Code = f.code(t, "openid")
		// app may use the code flow but the code was issued to svc.
		if _, err := f.g.Code(ctx, f.Runtime, f.Client(t, "app"), req); oauthCode(err) != oauth.ErrInvalidGrant {
			t.Fatalf("Code by another client = %v", err)
		}
	})
	t.Run("redeemed once; a replay revokes its refresh family", func(t *testing.T) {
		req := good
		req.Code = f.code(t, "openid", "offline_access")
		resp, err := f.g.Token(ctx, f.Runtime, svc, req)
		if err != nil || resp.RefreshToken == "" || resp.IDToken == "" {
			t.Fatalf("Token = %+v, %v; want tokens and a refresh token", resp, err)
		}
		if _, err := f.g.Token(ctx, f.Runtime, svc, req); oauthCode(err) != oauth.ErrInvalidGrant {
			t.Fatalf("replayed code = %v", err)
		}
		_, err = f.g.Token(ctx, f.Runtime, svc, grants.Request{GrantType: "refresh_token", RefreshToken: resp.RefreshToken})
		if oauthCode(err) != oauth.ErrInvalidGrant {
			t.Fatalf("refresh after replay = %v, want invalid_grant (family revoked)", err)
		}
	})
	t.Run("expired", func(t *testing.T) {
		req := good
		req.Code = f.code(t, "openid")
		f.Clock.Advance(2 * time.Minute)
		if _, err := f.g.Token(ctx, f.Runtime, svc, req); oauthCode(err) != oauth.ErrInvalidGrant {
			t.Fatalf("expired code = %v", err)
		}
	})
}

func TestRefreshReuseRevokesFamily(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	svc := f.Client(t, "svc")
	resp, err := f.g.Token(ctx, f.Runtime, svc, grants.Request{GrantType: "authorization_code", Code: f.code(t, "openid", "offline_access"), RedirectURI: "https://svc.example.com/callback", CodeVerifier: verifier})
	if err != nil {
		t.Fatal(err)
	}
	first := resp.RefreshToken
	next, err := f.g.Token(ctx, f.Runtime, svc, grants.Request{GrantType: "refresh_token", RefreshToken: first})
	if err != nil || next.RefreshToken == "" || next.RefreshToken == first {
		t.Fatalf("refresh = %+v, %v; want a new refresh token", next, err)
	}
	if _, err := f.g.Token(ctx, f.Runtime, svc, grants.Request{GrantType: "refresh_token", RefreshToken: next.RefreshToken, Scope: []string{"openid", "admin"}}); oauthCode(err) != oauth.ErrInvalidScope {
		t.Fatalf("widened scope = %v, want invalid_scope", err)
	}
	if _, err := f.g.Token(ctx, f.Runtime, svc, grants.Request{GrantType: "refresh_token", RefreshToken: first}); oauthCode(err) != oauth.ErrInvalidGrant {
		t.Fatalf("reused refresh token = %v, want invalid_grant", err)
	}
	if _, err := f.g.Token(ctx, f.Runtime, svc, grants.Request{GrantType: "refresh_token", RefreshToken: next.RefreshToken}); oauthCode(err) != oauth.ErrInvalidGrant {
		t.Fatalf("refresh after reuse = %v, want invalid_grant (family revoked)", err)
	}
	if _, err := f.g.Token(ctx, f.Runtime, svc, grants.Request{GrantType: "refresh_token", RefreshToken: "no-dot"}); oauthCode(err) != oauth.ErrInvalidGrant {
		t.Fatalf("malformed refresh token = %v", err)
	}
}

func TestClientCredentials(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	svc := f.Client(t, "svc")
	resp, err := f.g.Token(ctx, f.Runtime, svc, grants.Request{GrantType: "client_credentials", Scope: []string{"read"}, Audience: []string{"billing.acme.com"}})
	if err != nil || resp.IDToken != "" || resp.RefreshToken != "" || resp.Scope != "read" {
		t.Fatalf("client_credentials = %+v, %v", resp, err)
	}
	for _, tc := range []struct {
		req  grants.Request
		want string
	}{
		{grants.Request{GrantType: "client_credentials", Scope: []string{"openid"}}, oauth.ErrInvalidScope},
		{grants.Request{GrantType: "client_credentials", Scope: []string{"offline_access"}}, oauth.ErrInvalidScope},
		{grants.Request{GrantType: "client_credentials", Audience: []string{"evil.example"}}, oauth.ErrInvalidTarget},
		{grants.Request{GrantType: "urn:ietf:params:oauth:grant-type:token-exchange"}, oauth.ErrUnauthorizedClient},
		{grants.Request{GrantType: "password"}, oauth.ErrUnsupportedGrantType},
		{grants.Request{}, oauth.ErrInvalidRequest},
	} {
		if _, err := f.g.Token(ctx, f.Runtime, svc, tc.req); oauthCode(err) != tc.want {
			t.Errorf("Token(%+v) = %v, want %s", tc.req, err, tc.want)
		}
	}
	// A public client may not use it even if configured to.
	if _, err := f.g.ClientCredentials(ctx, f.Runtime, f.Client(t, "app"), grants.Request{GrantType: "client_credentials"}); oauthCode(err) != oauth.ErrUnauthorizedClient {
		t.Errorf("public client_credentials = %v", err)
	}
}

// TestExchangeNeverLeaksVerifierErrors: the workload verifier's error text
// (here, the address of an unreachable key server) stays in the audit log;
// the client gets a fixed description.
func TestExchangeNeverLeaksVerifierErrors(t *testing.T) {
	extra := `
workloads:
  - id: ci
    config:
      issuer: https://ci.example
      audiences: [fedbroker]
      jwks_url: http://127.0.0.1:1/secret-internal-jwks
`
	f := newFixtureWith(t, extra, svcExchanges)
	tok := workloadToken(t, "https://ci.example", f.Clock.Now())
	_, err := f.g.Token(context.Background(), f.Runtime, f.Client(t, "svc"), grants.Request{
		GrantType: config.GrantTokenExchange, SubjectToken: tok, SubjectTokenType: oauth.TokenTypeJWT,
	})
	var oe *oauth.Error
	if !errors.As(err, &oe) || oe.Code != oauth.ErrInvalidRequest {
		t.Fatalf("exchange = %v, want invalid_request", err)
	}
	for _, leak := range []string{"127.0.0.1", "secret-internal", "dial", "oidc", "workload:"} {
		if strings.Contains(oe.Description, leak) {
			t.Errorf("error_description %q leaks %q", oe.Description, leak)
		}
	}
}

// TestExchangeWithAnIssuerDownAtLoad: a workload issuer whose discovery was
// unreachable when the configuration loaded does not stop the broker;
// exchanges answer temporarily_unavailable until it can be opened.
func TestExchangeWithAnIssuerDownAtLoad(t *testing.T) {
	extra := `
workloads:
  - id: ci
    config:
      issuer: http://127.0.0.1:1/down
      audiences: [fedbroker]
`
	f := newFixtureWith(t, extra, svcExchanges)
	tok := workloadToken(t, "http://127.0.0.1:1/down", f.Clock.Now())
	_, err := f.g.Token(context.Background(), f.Runtime, f.Client(t, "svc"), grants.Request{GrantType: config.GrantTokenExchange, SubjectToken: tok, SubjectTokenType: oauth.TokenTypeJWT})
	var oe *oauth.Error
	if !errors.As(err, &oe) || oe.Code != oauth.ErrTemporarilyUnavailable || oe.Status != 503 {
		t.Fatalf("exchange with the issuer down = %v, want 503 temporarily_unavailable", err)
	}
}
