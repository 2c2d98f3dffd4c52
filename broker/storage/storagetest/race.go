package storagetest

import (
	"errors"
	"testing"
	"time"

	"github.com/fedbroker/fedbroker/broker/storage"
)

// RedeemRacesLogout redeems a code of a live session while a logout ends
// that session (its ended-session marker, then EndSessions, as
// logout.Service.End does) at the point of the redemption where the store
// runs the hook given to setHook: after the session was found not ended,
// before the family is started or committed. The logout runs beside the
// redemption, which waits for it up to 300 ms (a store that locks the
// session makes the logout wait for the redemption instead). Whatever the
// order, the family must not outlive the logout. The grant has a
// RefreshUntil, which on Redis starts the family in a step of its own.
func RedeemRacesLogout(t *testing.T, s storage.Storage, setHook func(func())) {
	t.Helper()
	gs := grantStore(t, s)
	c := ctx(t)
	now := time.Now().Round(0)
	until := now.Add(time.Hour)
	sub, sid := "sub-"+random(t), "sid-"+random(t)
	if err := s.CreateSession(c, storage.Session{ID: random(t), PublicID: sid, Subject: sub, ConnectorID: "google", AuthTime: now, Expiry: until}); err != nil {
		t.Fatal(err)
	}
	ac := storage.AuthCode{ClientID: "app", RedirectURI: "https://app.example.com/cb", FamilyID: random(t), Expiry: now.Add(time.Minute), Created: now,
		Grant: storage.Grant{ClientID: "app", Subject: sub, Scopes: []string{"openid", "offline_access"}, SessionID: sid, ConnectorID: "google",
			AuthTime: now, RefreshUntil: now.Add(2 * time.Hour)}}
	code := random(t)
	if err := s.CreateCode(c, code, ac); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	ran := false
	setHook(func() {
		setHook(nil)
		ran = true
		go func() {
			if _, err := s.MarkSeen(c, endedNS, sid, until); err != nil {
				done <- err
				return
			}
			_, _, err := s.EndSessions(c, sub, sid, until)
			done <- err
		}()
		select {
		case err := <-done:
			done <- err
		case <-time.After(300 * time.Millisecond):
		}
	})
	t.Cleanup(func() { setHook(nil) })
	r := redemption(t, now)
	if _, err := gs.RedeemCode(c, code, r); err != nil {
		t.Fatalf("RedeemCode = %v", err)
	}
	if !ran {
		t.Fatal("the store never ran the hook: the test does not reach the race")
	}
	if err := <-done; err != nil {
		t.Fatalf("logout: %v", err)
	}
	if _, err := s.GetRefresh(c, r.RefreshToken); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("the family of a code redeemed while its session ended is live after the logout: GetRefresh = %v, want ErrNotFound", err)
	}
}
