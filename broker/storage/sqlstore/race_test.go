package sqlstore

import (
	"errors"
	"testing"
	"time"

	"github.com/fedbroker/fedbroker/broker/storage"
)

// TestRedeemCodeRacesLogout: a logout that ends a session (its marker,
// then EndSessions) while a code of that session is being redeemed, after
// the redemption found the session not ended and before it committed,
// must not leave the family the redemption starts alive. Without a lock
// between the two, EndSessions does not see the uncommitted family and
// the redemption commits it after the logout.
func TestRedeemCodeRacesLogout(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		s := b.fresh(t, Options{})
		ctx := testCtx(t)
		now := time.Now().Round(0)
		const sub, sid, ended = "sub-race", "sid-race", "ended_session"
		until := now.Add(time.Hour)
		if err := s.CreateSession(ctx, storage.Session{ID: "session-secret", PublicID: sid, Subject: sub, ConnectorID: "google", AuthTime: now, Expiry: until}); err != nil {
			t.Fatal(err)
		}
		c := storage.AuthCode{ClientID: "app", RedirectURI: "https://app.example.com/cb", FamilyID: "fam-race", Expiry: now.Add(time.Minute),
			Grant: storage.Grant{ClientID: "app", Subject: sub, Scopes: []string{"openid", "offline_access"}, SessionID: sid, ConnectorID: "google", AuthTime: now}}
		if err := s.CreateCode(ctx, "code-race", c); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		logoutDuringRedemption := false
		redeemCheckedHook = func() {
			redeemCheckedHook = nil
			go func() {
				if _, err := s.MarkSeen(ctx, ended, sid, until); err != nil {
					done <- err
					return
				}
				_, _, err := s.EndSessions(ctx, sub, sid, until)
				done <- err
			}()
			// Give the logout time to finish while the redemption is open;
			// with the lock it waits for the redemption instead.
			select {
			case err := <-done:
				logoutDuringRedemption = true
				done <- err
			case <-time.After(300 * time.Millisecond):
			}
		}
		t.Cleanup(func() { redeemCheckedHook = nil })
		r := storage.Redemption{Now: now, EndedSessions: ended, FamilyID: "fam-race", RefreshToken: "fam-race.secret",
			RefreshIdle: time.Hour, RefreshAbsolute: 24 * time.Hour}
		got, err := s.RedeemCode(ctx, "code-race", r)
		if err != nil {
			t.Fatalf("RedeemCode = %v", err)
		}
		if err := <-done; err != nil {
			t.Fatalf("logout: %v", err)
		}
		t.Logf("logout finished during the redemption: %v; SessionEnded %v", logoutDuringRedemption, got.SessionEnded)
		if _, err := s.GetRefresh(ctx, r.RefreshToken); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("the family of a code redeemed while its session ended is live after the logout: GetRefresh = %v, want ErrNotFound", err)
		}
	})
}
