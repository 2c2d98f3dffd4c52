package redis

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/fedbroker/fedbroker/broker/storage"
	"github.com/fedbroker/fedbroker/broker/storage/redis/redistest"
)

// TestRedeemStepsRaceLogout: where a redemption starts its family in a
// step after the session check (a grant with RefreshUntil; every code on
// Redis Cluster), a logout that ends the session between the two (its
// marker, then EndSessions, which finds no family yet) must not leave the
// family started after it alive.
func TestRedeemStepsRaceLogout(t *testing.T) {
	s := open(t, redistest.Start(t), Options{KeyPrefix: "race"})
	defer s.Close()
	ctx := context.Background()
	now := time.Now().Round(0)
	const sub, sid, ended = "sub-race", "sid-race", "ended_session"
	until := now.Add(time.Hour)
	if err := s.CreateSession(ctx, storage.Session{ID: "session-secret", PublicID: sid, Subject: sub, ConnectorID: "google", AuthTime: now, Expiry: until}); err != nil {
		t.Fatal(err)
	}
	c := storage.AuthCode{ClientID: "app", RedirectURI: "https://app.example.com/cb", FamilyID: "fam-race", Expiry: now.Add(time.Minute), Created: now,
		Grant: storage.Grant{ClientID: "app", Subject: sub, Scopes: []string{"openid", "offline_access"}, SessionID: sid, ConnectorID: "google",
			AuthTime: now, RefreshUntil: now.Add(2 * time.Hour)}}
	if err := s.CreateCode(ctx, "code-race", c); err != nil {
		t.Fatal(err)
	}
	ran := false
	redeemStepHook = func() {
		redeemStepHook, ran = nil, true
		if _, err := s.MarkSeen(ctx, ended, sid, until); err != nil {
			t.Error(err)
		}
		if _, _, err := s.EndSessions(ctx, sub, sid, until); err != nil {
			t.Error(err)
		}
	}
	t.Cleanup(func() { redeemStepHook = nil })
	r := storage.Redemption{Now: now, EndedSessions: ended, FamilyID: "fam-race", RefreshToken: "fam-race.secret",
		RefreshIdle: time.Hour, RefreshAbsolute: 24 * time.Hour}
	got, err := s.RedeemCode(ctx, "code-race", r)
	if err != nil {
		t.Fatalf("RedeemCode = %v", err)
	}
	if !ran {
		t.Fatal("the family was not started in a step: the test does not reach the race")
	}
	if _, err := s.GetRefresh(ctx, r.RefreshToken); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("the family of a code redeemed while its session ended is live after the logout: GetRefresh = %v, want ErrNotFound", err)
	}
	if !got.SessionEnded || got.Family != nil {
		t.Errorf("RedeemCode = SessionEnded %v, Family %v; want the session ended and no family", got.SessionEnded, got.Family)
	}
}
