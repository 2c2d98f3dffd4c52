package e2e

// Scenarios 2 and 3 of issue 13: storage that comes back older (a stale RDB
// snapshot) or empty (no persistence) must not undo security decisions.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/fedbroker/fedbroker/broker/storage/redis/redistest"
)

// storageLossSlack is how long after the first replica detected a storage
// loss a test waits before it signs in again: every replica ticks its
// storage epoch each second, and the cutoff of a detection is rounded up
// to the next whole second.
const storageLossSlack = 2100 * time.Millisecond

// waitStorageRegression waits until a replica counts a storage regression
// in fedbroker_storage_regressions_total and returns when it saw it. It
// reports an error (and returns now) when none does within 15s.
func waitStorageRegression(t *testing.T, nodes []*stateReplica) time.Time {
	t.Helper()
	err := eventually(15*time.Second, func() error {
		if v := metricSum(nodes, "fedbroker_storage_regressions_total"); v > 0 {
			return nil
		}
		return fmt.Errorf("fedbroker_storage_regressions_total is 0 (or absent) on every replica")
	})
	if err != nil {
		t.Errorf("storage loss not detected: %v", err)
	}
	return time.Now()
}

// waitAllReady waits until every replica answers /readyz 200.
func waitAllReady(t *testing.T, nodes []*stateReplica) {
	t.Helper()
	for i, r := range nodes {
		if err := r.waitReady(20 * time.Second); err != nil {
			t.Fatalf("replica %d not ready after Redis restarted: %v", i, err)
		}
	}
}

// wantStorageLossLogged checks an ERROR line saying storage lost or rolled
// back state, other than the key set's own (scenario 1's) line.
func wantStorageLossLogged(t *testing.T, nodes []*stateReplica) {
	t.Helper()
	for _, r := range nodes {
		for _, rec := range errorLines(r, "storage") {
			if rec.str("component") == "keys" {
				continue
			}
			if m := rec.str("msg"); containsAnyFold(m, "rolled back", "lost", "empty") {
				return
			}
		}
	}
	t.Errorf("no replica logged an ERROR saying storage lost or rolled back its state (key-set lines aside)")
}

func containsAnyFold(s string, words ...string) bool {
	s = strings.ToLower(s)
	for _, w := range words {
		if strings.Contains(s, strings.ToLower(w)) {
			return true
		}
	}
	return false
}

// wantDurability checks what GET /admin/status says Redis persistence
// costs on every replica: mode "rdb" (a rollback window) or "none".
func wantDurability(t *testing.T, nodes []*stateReplica, mode string) {
	t.Helper()
	for i, r := range nodes {
		code, body, err := r.adminDo(http.MethodGet, "/admin/status", nil)
		var st struct {
			Storage struct {
				Durability struct{ Mode, Loss string }
			}
		}
		if err != nil || code != http.StatusOK || json.Unmarshal(body, &st) != nil {
			t.Fatalf("GET /admin/status at replica %d = %d %s, %v", i, code, body, err)
		}
		if d := st.Storage.Durability; d.Mode != mode || d.Loss == "" {
			t.Errorf("replica %d: /admin/status durability = %+v, want mode %q with what a restart loses", i, d, mode)
		}
	}
}

// wantFreshLoginWorks signs in again through replica 0 and checks the new
// tokens everywhere: they verify against every replica's JWKS, introspect
// active and answer userinfo on every replica, and the refresh token
// rotates.
func wantFreshLoginWorks(t *testing.T, cl *stateCluster) {
	t.Helper()
	fresh := cl.login(t, 0)
	for i, r := range cl.Nodes {
		for what, tok := range map[string]string{"access token": fresh.AccessToken, "ID token": fresh.IDToken} {
			if err := verifyAgainst(tok, r.URL); err != nil {
				t.Errorf("%s of the fresh login does not verify against the JWKS of replica %d: %v", what, i, err)
			}
		}
		if code, err := userinfoStatus(r.URL, fresh.AccessToken); err != nil || code != http.StatusOK {
			t.Errorf("userinfo with the fresh login's access token at replica %d = %d, %v; want 200", i, code, err)
		}
	}
	wantActiveEverywhere(t, "the fresh login's access token", cl.Nodes, fresh.AccessToken, true)
	if tr, err := refresh(cl.Nodes[2].URL, fresh.RefreshToken); err != nil || tr.status != http.StatusOK {
		t.Errorf("refresh of the fresh login at replica 2 = %d %s %s (%v), want 200", tr.status, tr.Error, tr.Description, err)
	}
}

// wantRefusedEverywhere checks that an access token issued before the
// storage loss is refused by introspection and userinfo on every replica.
func wantRefusedEverywhere(t *testing.T, what string, nodes []*stateReplica, token string, withUserinfo bool) {
	t.Helper()
	wantActiveEverywhere(t, what, nodes, token, false)
	if !withUserinfo {
		return
	}
	for i, r := range nodes {
		if code, err := userinfoStatus(r.URL, token); err != nil || code != http.StatusUnauthorized {
			t.Errorf("userinfo with %s at replica %d = %d, %v; want 401", what, i, code, err)
		}
	}
}

// TestStateStaleSnapshot (scenario 2): Redis persists RDB snapshots. After
// a snapshot (SAVE) a family is rotated, a family and an access token are
// revoked and the keys rotated twice; then Redis is SIGKILLed and comes
// back with the snapshot. The rolled-back state must not undo any of it:
// the rotated-away and the revoked refresh tokens stay dead (every family
// from before the detection is refused), the revoked access token
// introspects inactive, the key set does not go back (the newest key still
// signs, the post-rotation keys stay published); the rollback is logged
// at ERROR and counted in fedbroker_storage_regressions_total; access
// tokens from before the detection are refused; a fresh login works.
func TestStateStaleSnapshot(t *testing.T) {
	rs := redistest.StartServer(t, "--save", "3600 1")
	cl := startStateCluster(t, rs.URL(), fleetNode(), fleetNode(), fleetNode())
	n := cl.Nodes
	wantDurability(t, n, "rdb")
	rc := goredis.NewClient(&goredis.Options{Addr: rs.Addr()})
	defer rc.Close()
	ctx := context.Background()

	// Before the snapshot.
	f1, f2, f3, f4 := cl.login(t, 0), cl.login(t, 1), cl.login(t, 2), cl.login(t, 0)
	if err := rc.Save(ctx).Err(); err != nil {
		t.Fatalf("SAVE: %v", err)
	}

	// After the snapshot.
	r1, err := refresh(n[1].URL, f1.RefreshToken)
	if err != nil || r1.status != http.StatusOK {
		t.Fatalf("refresh F1 = %+v, %v", r1, err)
	}
	r1old := f1.RefreshToken
	revokeToken(t, n[2].URL, f2.RefreshToken)
	revokeToken(t, n[0].URL, f3.AccessToken) // A3
	wantActiveEverywhere(t, "A3 after its revocation", n, f3.AccessToken, false)
	for i := range 2 {
		if a := n[0].rotate(t); a.Code != http.StatusOK || a.Status != "rotated" {
			t.Fatalf("rotation %d = %+v, want 200 rotated", i+1, a)
		}
	}
	newest := signingKid(t, n[0].URL)
	published := kidsAt(t, n[0].URL)
	err = eventually(5*time.Second, func() error {
		for i, r := range n {
			if k := signingKid(t, r.URL); k != newest {
				return fmt.Errorf("replica %d signs with %s, replica 0 with %s", i, k, newest)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	cc, err := clientCredentials(n[1].URL)
	if err != nil || cc.status != http.StatusOK {
		t.Fatalf("client_credentials = %+v, %v", cc, err)
	}
	time.Sleep(storageLossSlack) // the replicas tick their storage epoch past the snapshot's

	rs.Restart() // SIGKILL, then back with the snapshot
	// The snapshot really is back: it holds F2, revoked after it.
	f2id, _, _ := strings.Cut(f2.RefreshToken, ".")
	if k, err := rc.Exists(ctx, "{fb:fam:"+f2id+"}:f").Result(); err != nil || k != 1 {
		t.Fatalf("after the restart Redis does not hold F2's family record (EXISTS = %d, %v): the snapshot was not restored", k, err)
	}
	waitAllReady(t, n)
	detected := waitStorageRegression(t, n)
	wantStorageLossLogged(t, n)
	// Every replica detects within a tick of the first.
	time.Sleep(1200 * time.Millisecond)

	// The key set did not go back.
	for i, r := range n {
		if k := signingKid(t, r.URL); k != newest {
			t.Errorf("replica %d signs with key %s after the rollback, want the newest %s", i, k, newest)
		}
		if m := missingFrom(kidsAt(t, r.URL), published); len(m) > 0 {
			t.Errorf("replica %d no longer publishes %v after the rollback", i, m)
		}
	}

	// Security decisions made after the snapshot stand; families from
	// before the detection are refused.
	wantInvalidGrant(t, "the rotated-away token R1old", n[2].URL, r1old)
	wantInvalidGrant(t, "F1's successor (never in the snapshot)", n[0].URL, r1.RefreshToken)
	wantInvalidGrant(t, "revoked F2's token", n[1].URL, f2.RefreshToken)
	wantInvalidGrant(t, "untouched F3's token (a family from before the detection)", n[0].URL, f3.RefreshToken)
	wantActiveEverywhere(t, "revoked access token A3", n, f3.AccessToken, false)

	// Access tokens issued before the detection are refused.
	wantRefusedEverywhere(t, "F4's access token (before the snapshot)", n, f4.AccessToken, true)
	wantRefusedEverywhere(t, "F1's second access token (after the snapshot)", n, r1.AccessToken, true)
	wantRefusedEverywhere(t, "a client_credentials token from before the crash", n, cc.AccessToken, false)

	time.Sleep(time.Until(detected.Add(storageLossSlack)))
	wantFreshLoginWorks(t, cl)
}

// TestStateRedisEmptyFailsClosed (scenario 3): Redis without persistence
// restarts empty. An access token revoked before stays refused everywhere,
// as does every access token issued before the detection (its revocation
// could have been lost); refresh tokens from before answer invalid_grant;
// a fresh login works.
func TestStateRedisEmptyFailsClosed(t *testing.T) {
	rs := redistest.StartServer(t)
	cl := startStateCluster(t, rs.URL(), fleetNode(), fleetNode(), fleetNode())
	n := cl.Nodes
	wantDurability(t, n, "none")

	revoked, kept := cl.login(t, 1), cl.login(t, 2)
	revokeToken(t, n[0].URL, revoked.AccessToken)
	wantActiveEverywhere(t, "the revoked access token before the restart", n, revoked.AccessToken, false)
	wantActiveEverywhere(t, "the kept access token before the restart", n, kept.AccessToken, true)
	time.Sleep(1100 * time.Millisecond) // an epoch tick with the revocation stored

	rs.Restart() // empty
	waitAllReady(t, n)
	detected := waitStorageRegression(t, n)
	wantStorageLossLogged(t, n)
	time.Sleep(1200 * time.Millisecond)

	wantRefusedEverywhere(t, "the access token revoked before the restart", n, revoked.AccessToken, true)
	wantRefusedEverywhere(t, "an access token issued before the restart", n, kept.AccessToken, true)
	wantInvalidGrant(t, "a refresh token from before the restart", n[0].URL, kept.RefreshToken)
	wantInvalidGrant(t, "the revoked login's refresh token", n[1].URL, revoked.RefreshToken)

	time.Sleep(time.Until(detected.Add(storageLossSlack)))
	wantFreshLoginWorks(t, cl)
}
