// Package storagetest is the conformance suite every storage.Storage backend
// passes. A backend's tests call Run with a constructor that returns a fresh,
// empty store, and may call RunUnavailable with a store whose backend is down
// and WriteSecrets to check its stored form for clear secrets.
package storagetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/fedbroker/fedbroker/broker/storage"
)

// Run runs the conformance suite. newStore must return a fresh store that
// shares nothing with stores returned earlier; Run closes it.
func Run(t *testing.T, newStore func(t *testing.T) storage.Storage) {
	open := func(t *testing.T) storage.Storage {
		t.Helper()
		s := newStore(t)
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	tests := []struct {
		name string
		fn   func(t *testing.T, s storage.Storage)
	}{
		{"AuthRequest", testAuthRequest},
		{"AuthRequestTakeConcurrent", testAuthRequestTakeConcurrent},
		{"Code", testCode},
		{"CodeConsumeConcurrent", testCodeConcurrent},
		{"Refresh", testRefresh},
		{"RefreshReuse", testRefreshReuse},
		{"RefreshUnknownSecret", testRefreshUnknownSecret},
		{"RefreshManyRotations", testRefreshManyRotations},
		{"UpdateRefreshGrant", testUpdateRefreshGrant},
		{"RefreshRotateConcurrent", testRefreshConcurrent},
		{"RefreshRetry", testRefreshRetry},
		{"RefreshRetryAfterWindow", testRefreshRetryAfterWindow},
		{"RefreshRetryAfterSuccessorUsed", testRefreshRetryAfterSuccessorUsed},
		{"RefreshRetryConcurrent", testRefreshRetryConcurrent},
		{"RefreshRevokeBeforeCreate", testRevokeBeforeCreate},
		{"RefreshExpiry", testRefreshExpiry},
		{"RefreshMalformed", testRefreshMalformed},
		{"RedeemCode", testRedeemCode},
		{"RedeemCodeNoFamily", testRedeemCodeNoFamily},
		{"RedeemCodeSessionEnded", testRedeemCodeSessionEnded},
		{"RedeemCodeConcurrent", testRedeemCodeConcurrent},
		{"RefreshGrant", testRefreshGrant},
		{"RefreshGrantUnchecked", testRefreshGrantUnchecked},
		{"RefreshGrantRetry", testRefreshGrantRetry},
		{"RefreshGrantConcurrent", testRefreshGrantConcurrent},
		{"Session", testSession},
		{"RevokeSubject", testRevokeSubject},
		{"Keys", testKeys},
		{"KeysConcurrent", testKeysConcurrent},
		{"KeysNotify", testKeysNotify},
		{"Lease", testLease},
		{"MarkSeen", testMarkSeen},
		{"Link", testLink},
		{"LinkConcurrent", testLinkConcurrent},
		{"TouchSession", testTouchSession},
		{"TouchSessionConcurrent", testTouchSessionConcurrent},
		{"TouchEndConcurrent", testTouchEndConcurrent},
		{"ListSessions", testListSessions},
		{"UpstreamSessions", testUpstreamSessions},
		{"EndSessionsOne", testEndSessionsOne},
		{"EndSessionsAll", testEndSessionsAll},
		{"Outbox", testOutbox},
		{"OutboxPrecision", testOutboxPrecision},
		{"OutboxClaimConcurrent", testOutboxConcurrent},
		{"Replicas", testReplicas},
		{"Ping", func(t *testing.T, s storage.Storage) {
			if err := s.Ping(ctx(t)); err != nil {
				t.Fatalf("Ping() = %v, want nil", err)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open(t)) })
	}
	// Tests that wait for real time set up together, sleep once and check.
	t.Run("Expiry", func(t *testing.T) {
		checks := map[string]func(*testing.T){}
		for _, tc := range []struct {
			name string
			fn   func(t *testing.T, s storage.Storage) func(*testing.T)
		}{
			{"AuthRequest", testExpireAuthRequest},
			{"Code", testExpireCode},
			{"Refresh", testExpireRefresh},
			{"Tombstone", testExpireTombstone},
			{"Session", testExpireSession},
			{"SessionLogout", testExpireLogout},
			{"Lease", testExpireLease},
			{"MarkSeen", testExpireSeen},
			{"Replica", testExpireReplica},
		} {
			s := open(t)
			t.Run(tc.name, func(t *testing.T) { checks[tc.name] = tc.fn(t, s) })
		}
		time.Sleep(wait)
		for name, check := range checks {
			t.Run(name+"/After", check)
		}
	})
}

// ttl is the lifetime of records in the expiry tests; wait is how long they
// sleep past it.
const (
	ttl  = 2 * time.Second
	wait = 2200 * time.Millisecond
)

var cmpOpts = []cmp.Option{cmpopts.EquateEmpty()}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func random(t testing.TB) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// token returns a fresh refresh token of family id.
func token(t testing.TB, familyID string) string { return familyID + "." + random(t) }

func grant(subject string) storage.Grant {
	return storage.Grant{
		ClientID:        "app",
		Subject:         subject,
		Scopes:          []string{"openid", "email", "offline_access"},
		Nonce:           "n-0S6_WzA2Mj",
		AuthTime:        time.Now().Add(-time.Minute).Round(0),
		SessionID:       "sid-1",
		AMR:             []string{"pwd", "mfa"},
		ConnectorID:     "google",
		UpstreamSubject: "1122334455",
		ConnectorData:   []byte{0, 1, 2, 0xff},
		IDTokenClaims: map[string]any{
			"email": "ada@example.com", "email_verified": true,
			"groups": []any{"eng", "ops"}, "level": float64(3),
		},
		AccessTokenClaims: map[string]any{"roles": []any{"admin"}},
	}
}

func family(t testing.TB, subject string) storage.RefreshFamily {
	now := time.Now().Round(0)
	return storage.RefreshFamily{
		ID:             random(t),
		Grant:          grant(subject),
		CreatedAt:      now,
		LastUsed:       now,
		IdleExpiry:     now.Add(time.Hour),
		AbsoluteExpiry: now.Add(24 * time.Hour),
	}
}

func code(t testing.TB) storage.AuthCode {
	return storage.AuthCode{
		ClientID:            "app",
		RedirectURI:         "https://app.example.com/cb",
		CodeChallenge:       "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
		CodeChallengeMethod: "S256",
		FamilyID:            random(t),
		Grant:               grant("sub-" + random(t)),
		Expiry:              time.Now().Add(time.Minute).Round(0),
	}
}

func session(t testing.TB, subject string) storage.Session {
	return storage.Session{
		ID:          random(t),
		PublicID:    random(t),
		Subject:     subject,
		ConnectorID: "google",
		Grant:       grant(subject),
		AuthTime:    time.Now().Add(-time.Minute).Round(0),
		Expiry:      time.Now().Add(time.Hour).Round(0),
		Extra:       map[string]any{"acr": "phr"},
	}
}

// wantErr fails t unless errors.Is(err, want) (or err is nil when want is).
func wantErr(t testing.TB, what string, err, want error) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Fatalf("%s: error = %v, want nil", what, err)
		}
		return
	}
	if !errors.Is(err, want) {
		t.Fatalf("%s: error = %v, want %v", what, err, want)
	}
}

// concurrently runs fn(i) for i in [0,n) at once and returns the errors.
func concurrently(n int, fn func(i int) error) []error {
	errs := make([]error, n)
	var start, done sync.WaitGroup
	start.Add(1)
	for i := 0; i < n; i++ {
		done.Add(1)
		go func() {
			defer done.Done()
			start.Wait()
			errs[i] = fn(i)
		}()
	}
	start.Done()
	done.Wait()
	return errs
}

// WriteSecrets stores a code, a refresh family rotated once and a session in
// s and returns every clear secret it used, for a backend test to assert
// that none of them appears in the stored form.
func WriteSecrets(t *testing.T, s storage.Storage) []string {
	t.Helper()
	c := ctx(t)
	clearCode := "code-" + random(t)
	if err := s.CreateCode(c, clearCode, code(t)); err != nil {
		t.Fatalf("CreateCode: %v", err)
	}
	f := family(t, "secret-subject")
	first, second := token(t, f.ID), token(t, f.ID)
	if err := s.CreateRefresh(c, f, first); err != nil {
		t.Fatalf("CreateRefresh: %v", err)
	}
	if _, _, err := s.RotateRefresh(c, first, second, time.Now(), time.Hour, retryOf(t, second)); err != nil {
		t.Fatalf("RotateRefresh: %v", err)
	}
	sess := session(t, "secret-subject")
	if err := s.CreateSession(c, sess); err != nil {
		t.Fatalf("CreateSession: %v", err)
	}
	// The secret parts of refresh tokens are what follows the family id.
	return []string{clearCode, first, second, first[len(f.ID)+1:], second[len(f.ID)+1:], sess.ID}
}

// RunUnavailable checks that every method of a store whose backend is down
// (or that was closed) fails with an error wrapping storage.ErrUnavailable
// and never storage.ErrNotFound.
func RunUnavailable(t *testing.T, s storage.Storage) {
	c := ctx(t)
	f := family(t, "x")
	sess := session(t, "x")
	calls := []struct {
		name string
		call func() error
	}{
		{"Ping", func() error { return s.Ping(c) }},
		{"CreateAuthRequest", func() error {
			return s.CreateAuthRequest(c, storage.AuthRequest{ID: "a", Expiry: time.Now().Add(time.Hour)})
		}},
		{"GetAuthRequest", func() error { _, err := s.GetAuthRequest(c, "a"); return err }},
		{"UpdateAuthRequest", func() error {
			return s.UpdateAuthRequest(c, storage.AuthRequest{ID: "a", Expiry: time.Now().Add(time.Hour)})
		}},
		{"TakeAuthRequest", func() error { _, err := s.TakeAuthRequest(c, "a"); return err }},
		{"CreateCode", func() error { return s.CreateCode(c, "c", code(t)) }},
		{"ConsumeCode", func() error { _, err := s.ConsumeCode(c, "c"); return err }},
		{"CreateRefresh", func() error { return s.CreateRefresh(c, f, token(t, f.ID)) }},
		{"RotateRefresh", func() error {
			_, _, err := s.RotateRefresh(c, token(t, f.ID), token(t, f.ID), time.Now(), time.Hour, storage.Retry{})
			return err
		}},
		{"GetRefresh", func() error { _, err := s.GetRefresh(c, token(t, f.ID)); return err }},
		{"RevokeFamily", func() error { return s.RevokeFamily(c, f.ID, time.Now().Add(time.Hour)) }},
		{"RevokeSubject", func() error { _, _, err := s.RevokeSubject(c, "x"); return err }},
		{"CreateSession", func() error { return s.CreateSession(c, sess) }},
		{"GetSession", func() error { _, err := s.GetSession(c, sess.ID); return err }},
		{"DeleteSession", func() error { return s.DeleteSession(c, sess.ID) }},
		{"GetKeys", func() error { _, _, err := s.GetKeys(c); return err }},
		{"PutKeys", func() error { _, err := s.PutKeys(c, []byte("k"), 0); return err }},
		{"AcquireLease", func() error { _, err := s.AcquireLease(c, "l", "h", time.Minute); return err }},
		{"MarkSeen", func() error { _, err := s.MarkSeen(c, "ns", "id", time.Now().Add(time.Hour)); return err }},
		{"CreateLink", func() error { _, _, err := s.CreateLink(c, storage.Link{Key: "k", Subject: "s"}); return err }},
		{"GetLink", func() error { _, err := s.GetLink(c, "k"); return err }},
		{"ListLinks", func() error { _, err := s.ListLinks(c); return err }},
		{"DeleteLink", func() error { return s.DeleteLink(c, "k") }},
		{"TouchSession", func() error { return s.TouchSession(c, sess.ID, "app", time.Now()) }},
		{"ListSessions", func() error { _, err := s.ListSessions(c, "x"); return err }},
		{"UpstreamSessions", func() error { _, err := s.UpstreamSessions(c, "google", "u", "x"); return err }},
		{"EndSessions", func() error { _, _, err := s.EndSessions(c, "x", "", time.Now().Add(time.Hour)); return err }},
		{"PutDelivery", func() error { return s.PutDelivery(c, storage.Delivery{ID: "d", Due: time.Now()}) }},
		{"ClaimDeliveries", func() error { _, err := s.ClaimDeliveries(c, time.Now(), time.Minute, 10); return err }},
		{"DeleteDelivery", func() error { return s.DeleteDelivery(c, "d") }},
		{"PendingDeliveries", func() error { _, err := s.PendingDeliveries(c); return err }},
		{"PutReplica", func() error { return s.PutReplica(c, storage.Replica{ID: "r"}, time.Now().Add(time.Hour)) }},
		{"ListReplicas", func() error { _, err := s.ListReplicas(c); return err }},
	}
	for _, tc := range calls {
		err := tc.call()
		if !errors.Is(err, storage.ErrUnavailable) || errors.Is(err, storage.ErrNotFound) {
			t.Errorf("%s on an unavailable store: error = %v, want one wrapping %v and not %v",
				tc.name, err, storage.ErrUnavailable, storage.ErrNotFound)
		}
	}
}
