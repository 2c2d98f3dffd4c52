package grants_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/grants"
	"github.com/fedbroker/fedbroker/broker/oauth"
	"github.com/fedbroker/fedbroker/broker/runtime"
	"github.com/fedbroker/fedbroker/broker/storage"
	"github.com/fedbroker/fedbroker/broker/tokens"
	"github.com/fedbroker/fedbroker/connectors/testidp"
)

// redeem redeems a fresh code of svc for scopes and returns the response.
func (f fixture) redeem(t *testing.T, scopes ...string) *tokens.Response {
	t.Helper()
	resp, err := f.g.Token(context.Background(), f.Runtime, f.Client(t, "svc"), grants.Request{
		GrantType: "authorization_code", Code: f.code(t, scopes...), RedirectURI: "https://svc.example.com/callback", CodeVerifier: verifier,
	})
	if err != nil {
		t.Fatalf("redeem: %v", err)
	}
	return resp
}

// refresh rotates token for cl, asking for scopes (none: the granted ones).
func (f fixture) refresh(cl *runtime.Client, token string, scopes ...string) (*tokens.Response, error) {
	return f.g.Token(context.Background(), f.Runtime, cl, grants.Request{GrantType: "refresh_token", RefreshToken: token, Scope: scopes})
}

// wantLive fails unless the access token checks.
func (f fixture) wantLive(t *testing.T, what, at string) {
	t.Helper()
	if _, err := f.a.CheckAccessToken(context.Background(), at); err != nil {
		t.Errorf("%s: CheckAccessToken = %v, want live", what, err)
	}
}

// wantDead fails unless the access token is refused as invalid.
func (f fixture) wantDead(t *testing.T, what, at string) {
	t.Helper()
	if _, err := f.a.CheckAccessToken(context.Background(), at); !errors.Is(err, tokens.ErrInvalid) {
		t.Errorf("%s: CheckAccessToken = %v, want ErrInvalid (revoked)", what, err)
	}
}

// TestRefreshReuseDetectedWhateverTheRequest (finding 1): a rotated refresh
// token presented again revokes its family whatever else the request says —
// a scope (granted or not), another client — and the family's access tokens
// die with it (finding 3).
func TestRefreshReuseDetectedWhateverTheRequest(t *testing.T) {
	for _, tc := range []struct {
		name   string
		client string
		scopes []string
	}{
		{"no scope", "svc", nil},
		{"granted scope", "svc", []string{"openid"}},
		{"scope never granted", "svc", []string{"openid", "admin"}},
		{"another client", "app", nil},
		{"another client with a scope", "app", []string{"openid"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			svc := f.Client(t, "svc")
			first := f.redeem(t, "openid", "offline_access")
			next, err := f.refresh(svc, first.RefreshToken)
			if err != nil {
				t.Fatalf("refresh: %v", err)
			}
			other := f.redeem(t, "openid", "offline_access")

			_, err = f.refresh(f.Client(t, tc.client), first.RefreshToken, tc.scopes...)
			if got := oauthCode(err); got != oauth.ErrInvalidGrant {
				t.Fatalf("replayed rotated refresh token = %v, want invalid_grant", err)
			}
			if _, err := f.refresh(svc, next.RefreshToken); oauthCode(err) != oauth.ErrInvalidGrant {
				t.Fatalf("current token after reuse = %v, want invalid_grant (family revoked)", err)
			}
			f.wantDead(t, "access token from the code", first.AccessToken)
			f.wantDead(t, "access token from the rotation", next.AccessToken)
			// Another family is untouched.
			f.wantLive(t, "access token of another family", other.AccessToken)
			if _, err := f.refresh(svc, other.RefreshToken); err != nil {
				t.Fatalf("another family after reuse: %v", err)
			}
		})
	}
}

// TestRefreshFailureNeverRotates (finding 1): a current refresh token in a
// request that fails (a scope never granted, another client) is not
// rotated: its client can still use it.
func TestRefreshFailureNeverRotates(t *testing.T) {
	f := newFixture(t)
	svc := f.Client(t, "svc")
	first := f.redeem(t, "openid", "offline_access")
	if _, err := f.refresh(svc, first.RefreshToken, "openid", "admin"); oauthCode(err) != oauth.ErrInvalidScope {
		t.Fatalf("widened scope = %v, want invalid_scope", err)
	}
	if _, err := f.refresh(f.Client(t, "app"), first.RefreshToken); oauthCode(err) != oauth.ErrInvalidGrant {
		t.Fatalf("another client = %v, want invalid_grant", err)
	}
	next, err := f.refresh(svc, first.RefreshToken, "openid")
	if err != nil || next.RefreshToken == "" || next.Scope != "openid" {
		t.Fatalf("refresh after failed requests = %+v, %v; want a new refresh token", next, err)
	}
	f.wantLive(t, "access token from the code", first.AccessToken)
	f.wantLive(t, "access token from the rotation", next.AccessToken)
}

// TestCodeReplayRevokesAccessTokens (finding 2, RFC 6749 §4.1.2): a
// replayed code revokes the access tokens issued from it, with or without
// a refresh token, and those issued from its refresh family.
func TestCodeReplayRevokesAccessTokens(t *testing.T) {
	for _, scopes := range [][]string{{"openid"}, {"openid", "offline_access"}} {
		t.Run(scopes[len(scopes)-1], func(t *testing.T) {
			f := newFixture(t)
			ctx := context.Background()
			svc := f.Client(t, "svc")
			code := f.code(t, scopes...)
			req := grants.Request{GrantType: "authorization_code", Code: code, RedirectURI: "https://svc.example.com/callback", CodeVerifier: verifier}
			resp, err := f.g.Token(ctx, f.Runtime, svc, req)
			if err != nil {
				t.Fatal(err)
			}
			var refreshed *tokens.Response
			if resp.RefreshToken != "" {
				if refreshed, err = f.refresh(svc, resp.RefreshToken); err != nil {
					t.Fatal(err)
				}
			}
			other := f.redeem(t, scopes...)
			f.wantLive(t, "access token before the replay", resp.AccessToken)
			if _, err := f.g.Token(ctx, f.Runtime, svc, req); oauthCode(err) != oauth.ErrInvalidGrant {
				t.Fatalf("replayed code = %v, want invalid_grant", err)
			}
			f.wantDead(t, "access token of the replayed code", resp.AccessToken)
			if refreshed != nil {
				f.wantDead(t, "access token refreshed from the replayed code", refreshed.AccessToken)
				if _, err := f.refresh(svc, refreshed.RefreshToken); oauthCode(err) != oauth.ErrInvalidGrant {
					t.Errorf("refresh after replay = %v, want invalid_grant", err)
				}
			}
			f.wantLive(t, "access token of another code", other.AccessToken)
			if _, err := f.a.Introspect(ctx, svc, resp.AccessToken); err != nil {
				t.Fatal(err)
			}
			if got, _ := f.a.Introspect(ctx, svc, resp.AccessToken); got["active"] != false {
				t.Errorf("introspection of a revoked access token = %v", got)
			}
		})
	}
}

// TestRevokeRefreshTokenRevokesAccessTokens (finding 3, RFC 7009 §2.1):
// revoking a refresh token through /revoke revokes the access tokens of
// its family, and tokens delegated from them.
func TestRevokeRefreshTokenRevokesAccessTokens(t *testing.T) {
	f := newFixtureWith(t, "", svcDelegates)
	ctx := context.Background()
	svc := f.Client(t, "svc")
	first := f.redeem(t, "openid", "offline_access")
	next, err := f.refresh(svc, first.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	del, err := f.g.Token(ctx, f.Runtime, svc, grants.Request{GrantType: tokenExchange, SubjectToken: next.AccessToken, SubjectTokenType: oauth.TokenTypeAccessToken, Audience: []string{"billing.acme.com"}})
	if err != nil {
		t.Fatalf("delegation: %v", err)
	}
	other := f.redeem(t, "openid", "offline_access")
	// Another client's revocation is ignored.
	if err := f.a.Revoke(ctx, f.Client(t, "app"), next.RefreshToken); err != nil {
		t.Fatal(err)
	}
	f.wantLive(t, "access token after another client's revocation", next.AccessToken)
	if err := f.a.Revoke(ctx, svc, next.RefreshToken); err != nil {
		t.Fatal(err)
	}
	f.wantDead(t, "access token from the code", first.AccessToken)
	f.wantDead(t, "access token from the rotation", next.AccessToken)
	f.wantDead(t, "access token delegated from the family", del.AccessToken)
	if _, err := f.a.Userinfo(ctx, next.AccessToken); !errors.Is(err, tokens.ErrInvalid) {
		t.Errorf("Userinfo(revoked family) = %v, want ErrInvalid", err)
	}
	f.wantLive(t, "access token of another family", other.AccessToken)
}

// TestUpstreamRefusalRevokesAccessTokens (finding 3): when the upstream
// refuses to refresh a sign-in, the family is revoked and so are its
// access tokens.
func TestUpstreamRefusalRevokesAccessTokens(t *testing.T) {
	idp := testidp.New(testidp.Options{})
	t.Cleanup(idp.Close)
	f := newFixtureWith(t, "", func(c *config.Config) {
		var doc yaml.Node
		src := fmt.Sprintf("issuer: %s\nclient_id: %s\nclient_secret: %s\ntimeout: 2s\n", idp.URL(), idp.ClientID(), idp.ClientSecret())
		if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
			t.Fatal(err)
		}
		c.Connectors = append(c.Connectors, config.Connector{ID: "corp", Type: "oidc", Name: "Corp", Config: *doc.Content[0]})
	})
	ctx := context.Background()
	svc := f.Client(t, "svc")
	code := oauth.RandomToken(32)
	err := f.Store.CreateCode(ctx, code, storage.AuthCode{
		ClientID: "svc", RedirectURI: "https://svc.example.com/callback", FamilyID: oauth.RandomToken(16),
		Grant: storage.Grant{ClientID: "svc", Subject: "sub-dana", Scopes: []string{"openid", "offline_access"}, ConnectorID: "corp",
			UpstreamSubject: "dana", ConnectorData: []byte(`{"refresh_token":"the-upstream-forgot-it"}`)},
		Expiry: f.Clock.Now().Add(time.Minute),
	})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := f.g.Token(ctx, f.Runtime, svc, grants.Request{GrantType: "authorization_code", Code: code, RedirectURI: "https://svc.example.com/callback"})
	if err != nil || resp.RefreshToken == "" {
		t.Fatalf("redeem = %+v, %v", resp, err)
	}
	f.wantLive(t, "access token before the refusal", resp.AccessToken)
	if _, err := f.refresh(svc, resp.RefreshToken); oauthCode(err) != oauth.ErrInvalidGrant {
		t.Fatalf("refresh refused upstream = %v, want invalid_grant", err)
	}
	if !strings.Contains(f.audit.String(), "refresh_upstream_refused") {
		t.Fatalf("no refresh_upstream_refused audit line: %s", f.audit.String())
	}
	f.wantDead(t, "access token of the refused sign-in", resp.AccessToken)
}
