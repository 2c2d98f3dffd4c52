package tokens_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/fedbroker/fedbroker/broker/storage"
	"github.com/fedbroker/fedbroker/broker/tokens"
)

// familyGrant is grant(client) minted as part of refresh family famID.
func familyGrant(client, famID string) storage.Grant {
	g := grant(client)
	g.FamilyRef = tokens.FamilyRef(famID)
	return g
}

// startFamily stores refresh family famID of client svc and returns its
// refresh token.
func startFamily(t *testing.T, store storage.Storage, famID string, now time.Time, life time.Duration) string {
	t.Helper()
	token := famID + ".secret-" + famID
	err := store.CreateRefresh(context.Background(), storage.RefreshFamily{
		ID: famID, Grant: grant("svc"), CreatedAt: now, LastUsed: now, IdleExpiry: now.Add(life), AbsoluteExpiry: now.Add(life),
	}, token)
	if err != nil {
		t.Fatal(err)
	}
	return token
}

func payload(t *testing.T, jwt string) map[string]any {
	t.Helper()
	parts := strings.Split(jwt, ".")
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestRevokeRefreshTokenRevokesItsAccessTokens (RFC 7009 §2.1): revoking a
// refresh token revokes the access tokens of its family, and only those;
// the token names its family only by a digest, never by the family id
// (the first half of the refresh token, a storage key).
func TestRevokeRefreshTokenRevokesItsAccessTokens(t *testing.T) {
	a, f := newAuthority(t)
	ctx := context.Background()
	svc := f.Client(t, "svc")
	now := f.Clock.Now()
	famID, otherID := "famAAAAAAAAAAAAAAAAAAAA", "famBBBBBBBBBBBBBBBBBBBBB"
	rt := startFamily(t, f.Store, famID, now, time.Hour)
	startFamily(t, f.Store, otherID, now, time.Hour)
	mine, err := a.Issue(svc, familyGrant("svc", famID), now)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := a.Issue(svc, familyGrant("svc", otherID), now)
	none, _ := a.Issue(svc, grant("svc"), now)

	p := payload(t, mine.AccessToken)
	if strings.Contains(fmt.Sprint(p), famID) || strings.Contains(mine.AccessToken, famID) {
		t.Fatalf("access token carries the family id in clear: %v", p)
	}
	ref := tokens.FamilyRef(famID)
	if len(ref) < 20 || ref == tokens.FamilyRef(otherID) {
		t.Fatalf("FamilyRef = %q, %q", ref, tokens.FamilyRef(otherID))
	}
	if idp := payload(t, mine.IDToken); strings.Contains(fmt.Sprint(idp), ref) {
		t.Errorf("the ID token carries the family reference: %v", idp)
	}
	if _, err := a.Userinfo(ctx, mine.AccessToken); err != nil {
		t.Fatal(err)
	}
	if ui, _ := a.Userinfo(ctx, mine.AccessToken); strings.Contains(fmt.Sprint(ui), ref) {
		t.Errorf("userinfo releases the family reference: %v", ui)
	}
	if in, _ := a.Introspect(ctx, svc, mine.AccessToken); strings.Contains(fmt.Sprint(in), ref) {
		t.Errorf("introspection releases the family reference: %v", in)
	}

	if err := a.Revoke(ctx, svc, rt); err != nil {
		t.Fatal(err)
	}
	if _, err := a.CheckAccessToken(ctx, mine.AccessToken); !errors.Is(err, tokens.ErrInvalid) {
		t.Errorf("access token of the revoked family: %v, want ErrInvalid", err)
	}
	if got, err := a.Introspect(ctx, svc, mine.AccessToken); err != nil || got["active"] != false {
		t.Errorf("Introspect(access token of the revoked family) = %v, %v; want inactive", got, err)
	}
	for name, tok := range map[string]string{"another family": other.AccessToken, "no family": none.AccessToken} {
		if _, err := a.CheckAccessToken(ctx, tok); err != nil {
			t.Errorf("%s: CheckAccessToken = %v, want live", name, err)
		}
	}
}

// TestRevokeFamilyOutlivesItsTokens: a family revoked at the end of its
// life still refuses the access tokens issued in its last moment, until
// they expire.
func TestRevokeFamilyOutlivesItsTokens(t *testing.T) {
	a, f := newAuthority(t)
	ctx := context.Background()
	svc := f.Client(t, "svc")
	famID := "famCCCCCCCCCCCCCCCCCCCCC"
	rt := startFamily(t, f.Store, famID, f.Clock.Now(), time.Minute)
	f.Clock.Advance(time.Minute - time.Second)
	late, err := a.Issue(svc, familyGrant("svc", famID), f.Clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Revoke(ctx, svc, rt); err != nil {
		t.Fatal(err)
	}
	f.Clock.Advance(svc.AccessTokenTTL - 2*time.Second)
	if _, err := a.CheckAccessToken(ctx, late.AccessToken); !errors.Is(err, tokens.ErrInvalid) {
		t.Errorf("access token issued in the family's last second, checked just before it expires: %v, want ErrInvalid", err)
	}
}

// TestMappedClaimCannotForgeTheFamily: a mapped claim of the family
// reference's name never reaches a token, so a mapping can neither detach
// a token from its family nor attach it to another.
func TestMappedClaimCannotForgeTheFamily(t *testing.T) {
	a, f := newAuthority(t)
	ctx := context.Background()
	svc := f.Client(t, "svc")
	famID := "famDDDDDDDDDDDDDDDDDDDDD"
	rt := startFamily(t, f.Store, famID, f.Clock.Now(), time.Hour)
	g := familyGrant("svc", famID)
	g.AccessTokenClaims = map[string]any{tokens.FamilyClaim: "forged", "dept": "r&d"}
	resp, err := a.Issue(svc, g, f.Clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	if got := payload(t, resp.AccessToken)[tokens.FamilyClaim]; got != tokens.FamilyRef(famID) {
		t.Fatalf("%s = %v, want the family's reference", tokens.FamilyClaim, got)
	}
	if err := a.Revoke(ctx, svc, rt); err != nil {
		t.Fatal(err)
	}
	if _, err := a.CheckAccessToken(ctx, resp.AccessToken); !errors.Is(err, tokens.ErrInvalid) {
		t.Errorf("CheckAccessToken after revocation = %v, want ErrInvalid", err)
	}
	if got := tokens.Releasable(map[string]any{tokens.FamilyClaim: "x"}, []string{"openid"}); len(got) != 0 {
		t.Errorf("Releasable released %v", got)
	}
}

// failingSeen fails MarkSeen in every namespace but the jti one, so only
// the family check meets the outage.
type failingSeen struct{ storage.Storage }

func (s failingSeen) MarkSeen(ctx context.Context, ns, id string, until time.Time) (bool, error) {
	if ns == "revoked_at" {
		return s.Storage.MarkSeen(ctx, ns, id, until)
	}
	return false, fmt.Errorf("test: %w", storage.ErrUnavailable)
}

// TestFamilyCheckOutageIsAnError: when storage cannot say whether a
// token's family was revoked, the token is neither valid nor invalid: the
// caller gets the storage error.
func TestFamilyCheckOutageIsAnError(t *testing.T) {
	_, f := newAuthority(t)
	a := tokens.New(tokens.Deps{Issuer: "https://broker.test", Keys: f.Keys, Store: failingSeen{f.Store}, Now: f.Clock.Now})
	resp, err := a.Issue(f.Client(t, "svc"), familyGrant("svc", "famEEEEEEEEEEEEEEEEEEEEE"), f.Clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.CheckAccessToken(context.Background(), resp.AccessToken); err == nil || errors.Is(err, tokens.ErrInvalid) || !errors.Is(err, storage.ErrUnavailable) {
		t.Errorf("CheckAccessToken with storage down = %v, want the storage error", err)
	}
	if got, err := a.Introspect(context.Background(), f.Client(t, "svc"), resp.AccessToken); err == nil {
		t.Errorf("Introspect with storage down = %v, want an error", got)
	}
	if err := a.RevokeFamily(context.Background(), "famEEEEEEEEEEEEEEEEEEEEE", f.Clock.Now().Add(time.Hour)); !errors.Is(err, storage.ErrUnavailable) {
		t.Errorf("RevokeFamily with storage down = %v, want the storage error", err)
	}
}
