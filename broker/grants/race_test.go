package grants_test

import (
	"context"
	"testing"
	"time"

	"github.com/fedbroker/fedbroker/broker/grants"
	"github.com/fedbroker/fedbroker/broker/oauth"
	"github.com/fedbroker/fedbroker/broker/storage"
	"github.com/fedbroker/fedbroker/broker/tokens"
)

// logoutBeforeFamily is a store without storage.GrantStore on which a
// logout of session sid (its marker, then EndSessions, as
// logout.Service.End does) happens just before the first family is
// stored: between the token endpoint's session check and its family.
type logoutBeforeFamily struct {
	composedStore
	a            *tokens.Authority
	subject, sid string
	done         bool
}

func (s *logoutBeforeFamily) CreateRefresh(ctx context.Context, f storage.RefreshFamily, token string) error {
	if !s.done {
		s.done = true
		until := time.Now().Add(time.Hour)
		if err := s.a.RevokeSession(ctx, s.sid, until); err != nil {
			return err
		}
		if _, _, err := s.Storage.EndSessions(ctx, s.subject, s.sid, until); err != nil {
			return err
		}
	}
	return s.Storage.CreateRefresh(ctx, f, token)
}

// TestComposedCodeRacesLogout: on a store without one step per grant, a
// session that ends between a code's session check and its family's
// start leaves no live family, and the code is refused as one of an ended
// session.
func TestComposedCodeRacesLogout(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	st := &logoutBeforeFamily{composedStore: composedStore{f.Store}, a: f.a, subject: "sub-alice", sid: "sid-race"}
	g := grants.New(grants.Deps{Tokens: f.a, Store: st, Now: f.Clock.Now})
	code := oauth.RandomToken(32)
	ac := storage.AuthCode{
		ClientID: "svc", RedirectURI: "https://svc.example.com/callback",
		CodeChallenge: challenge(verifier), CodeChallengeMethod: "S256", FamilyID: oauth.RandomToken(16),
		Grant: storage.Grant{ClientID: "svc", Subject: "sub-alice", Scopes: []string{"openid", "offline_access"}, ConnectorID: "local",
			SessionID: "sid-race", AuthTime: f.Clock.Now()},
		Expiry: f.Clock.Now().Add(time.Minute),
	}
	if err := f.Store.CreateCode(ctx, code, ac); err != nil {
		t.Fatal(err)
	}
	resp, err := g.Token(ctx, f.Runtime, f.Client(t, "svc"), grants.Request{GrantType: "authorization_code", Code: code,
		RedirectURI: "https://svc.example.com/callback", CodeVerifier: verifier})
	if !st.done {
		t.Fatal("no family was stored: the test does not reach the race")
	}
	if oauthCode(err) != oauth.ErrInvalidGrant {
		t.Fatalf("Token = %+v, %v; want invalid_grant (the session ended)", resp, err)
	}
	if n, _, err := f.Store.RevokeSubject(ctx, "sub-alice"); err != nil || n != 0 {
		t.Fatalf("RevokeSubject after the logout = %d live families, %v; want none", n, err)
	}
}
