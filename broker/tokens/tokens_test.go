package tokens_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/fedbroker/fedbroker/broker/runtime/runtimetest"
	"github.com/fedbroker/fedbroker/broker/storage"
	"github.com/fedbroker/fedbroker/broker/tokens"
)

func newAuthority(t *testing.T) (*tokens.Authority, *runtimetest.Fixture) {
	f := runtimetest.New(t, "", nil)
	return tokens.New(tokens.Deps{Issuer: runtimetest.Issuer, Keys: f.Keys, Store: f.Store, Now: f.Clock.Now}), f
}

func grant(client string) storage.Grant {
	claims := map[string]any{"email": "alice@acme.com", "name": "Alice", "groups": []any{"eng"}, "dept": "r&d", "sub": "mallory", "typ": "x"}
	return storage.Grant{ClientID: client, Subject: "sub-alice", Scopes: []string{"openid", "email"}, SessionID: "sid-1",
		AuthTime: time.Unix(1700000000, 0), IDTokenClaims: claims, AccessTokenClaims: claims}
}

func TestIssueAndCheck(t *testing.T) {
	a, f := newAuthority(t)
	ctx := context.Background()
	cl := f.Client(t, "svc")
	resp, err := a.Issue(cl, grant("svc"), f.Clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	if resp.IDToken == "" || resp.AccessToken == "" || resp.TokenType != "Bearer" {
		t.Fatalf("Issue = %+v, want an ID token and a bearer access token", resp)
	}
	at, err := a.CheckAccessToken(ctx, resp.AccessToken)
	if err != nil {
		t.Fatalf("CheckAccessToken: %v", err)
	}
	if at.Subject != "sub-alice" || at.ClientID != "svc" || at.Raw["email"] != "alice@acme.com" {
		t.Errorf("access token claims = %v", at.Raw)
	}
	// Mapped claims never override registered ones, and scopes filter.
	if at.Raw["typ"] != nil || at.Raw["name"] != nil {
		t.Errorf("access token released typ or an unscoped claim: %v", at.Raw)
	}
	if aud, err := a.CheckIDTokenHint(resp.IDToken); err != nil || aud != "svc" {
		t.Errorf("CheckIDTokenHint(id token) = %q, %v; want svc", aud, err)
	}
	// Swapped: an ID token is no access token, and the other way round.
	if _, err := a.CheckAccessToken(ctx, resp.IDToken); !errors.Is(err, tokens.ErrInvalid) {
		t.Errorf("CheckAccessToken(id token) = %v, want ErrInvalid", err)
	}
	if _, err := a.CheckIDTokenHint(resp.AccessToken); !errors.Is(err, tokens.ErrInvalid) {
		t.Errorf("CheckIDTokenHint(access token) = %v, want ErrInvalid", err)
	}
	// Another issuer with the same keys.
	other := tokens.New(tokens.Deps{Issuer: "https://other.test", Keys: f.Keys, Store: f.Store, Now: f.Clock.Now})
	if _, err := other.CheckAccessToken(ctx, resp.AccessToken); !errors.Is(err, tokens.ErrInvalid) {
		t.Errorf("another issuer accepted the token: %v", err)
	}
	// Malformed and oversized.
	for _, bad := range []string{"", "a.b.c", resp.AccessToken + "x", string(make([]byte, 17<<10))} {
		if _, err := a.CheckAccessToken(ctx, bad); !errors.Is(err, tokens.ErrInvalid) {
			t.Errorf("CheckAccessToken(%.20q) = %v, want ErrInvalid", bad, err)
		}
	}
	// Expired.
	f.Clock.Advance(cl.AccessTokenTTL + time.Second)
	if _, err := a.CheckAccessToken(ctx, resp.AccessToken); !errors.Is(err, tokens.ErrInvalid) {
		t.Errorf("expired token: %v, want ErrInvalid", err)
	}
}

func TestRevokeAndIntrospect(t *testing.T) {
	a, f := newAuthority(t)
	ctx := context.Background()
	svc, app := f.Client(t, "svc"), f.Client(t, "app")
	resp, err := a.Issue(svc, grant("svc"), f.Clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	got, err := a.Introspect(ctx, svc, resp.AccessToken)
	if err != nil || got["active"] != true || got["client_id"] != "svc" {
		t.Fatalf("Introspect = %v, %v; want active", got, err)
	}
	// Another client cannot revoke it.
	if err := a.Revoke(ctx, app, resp.AccessToken); err != nil {
		t.Fatal(err)
	}
	if _, err := a.CheckAccessToken(ctx, resp.AccessToken); err != nil {
		t.Fatalf("another client's revocation took effect: %v", err)
	}
	if err := a.Revoke(ctx, svc, resp.AccessToken); err != nil {
		t.Fatal(err)
	}
	if got, _ := a.Introspect(ctx, svc, resp.AccessToken); got["active"] != false {
		t.Errorf("revoked token introspects %v", got)
	}
	if _, err := a.Userinfo(ctx, resp.AccessToken); !errors.Is(err, tokens.ErrInvalid) {
		t.Errorf("Userinfo(revoked) = %v, want ErrInvalid", err)
	}
	// Unknown refresh tokens and garbage are inactive, never errors.
	for _, tok := range []string{"fam.secret", "garbage", "a.b.c"} {
		if got, err := a.Introspect(ctx, svc, tok); err != nil || got["active"] != false {
			t.Errorf("Introspect(%q) = %v, %v; want inactive", tok, got, err)
		}
		if err := a.Revoke(ctx, svc, tok); err != nil {
			t.Errorf("Revoke(%q) = %v, want nil", tok, err)
		}
	}
}

func TestUserinfoNeedsOpenID(t *testing.T) {
	a, f := newAuthority(t)
	g := grant("svc")
	g.Scopes = []string{"email"}
	at, _, err := a.AccessToken(f.Client(t, "svc"), g, nil, f.Clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Userinfo(context.Background(), at); !errors.Is(err, tokens.ErrInsufficientScope) {
		t.Fatalf("Userinfo without openid = %v, want ErrInsufficientScope", err)
	}
}

func TestReleasable(t *testing.T) {
	claims := map[string]any{"email": "a@b", "name": "A", "groups": []any{"g"}, "dept": "x", "iss": "evil", "typ": "evil", "cnf": "evil"}
	for _, tc := range []struct {
		scopes []string
		want   []string
	}{
		{[]string{"openid"}, []string{"dept"}},
		{[]string{"openid", "email"}, []string{"dept", "email"}},
		{[]string{"openid", "profile", "groups"}, []string{"dept", "groups", "name"}},
	} {
		got := tokens.Releasable(claims, tc.scopes)
		if len(got) != len(tc.want) {
			t.Errorf("Releasable(%v) = %v, want keys %v", tc.scopes, got, tc.want)
			continue
		}
		for _, k := range tc.want {
			if _, ok := got[k]; !ok {
				t.Errorf("Releasable(%v) = %v, want keys %v", tc.scopes, got, tc.want)
			}
		}
	}
}
