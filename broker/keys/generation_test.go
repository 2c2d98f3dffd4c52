package keys

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fedbroker/fedbroker/broker/storage"
)

// storedSet decodes the key set held by store.
func storedSet(t *testing.T, store storage.Storage) *keySet {
	t.Helper()
	data, _, err := store.GetKeys(context.Background())
	if err != nil {
		t.Fatalf("GetKeys: %v", err)
	}
	set, err := decodeSet(data)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// storedKids returns every kid of alg in the stored set.
func storedKids(set *keySet, alg string) []string {
	as := set.Algs[alg]
	if as == nil {
		return nil
	}
	out := []string{as.Active.KID, as.Next.KID}
	for _, r := range as.Retired {
		out = append(out, r.KID)
	}
	return out
}

// containsAll reports whether every element of want is in got.
func containsAll(got, want []string) bool {
	for _, w := range want {
		if !slices.Contains(got, w) {
			return false
		}
	}
	return true
}

// signed returns a token m signs now with the default algorithm.
func signed(t *testing.T, m *Manager) string {
	t.Helper()
	tok, err := m.Sign("", []byte(`{}`), "JWT")
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestSplitKeySetsConverge: two replicas that both wrote a key set "first"
// (Redis restarted empty between their writes, so both records are version
// 1) converge within a few sync rounds on one set holding both original
// sets' keys, and tokens either signed before keep verifying on both.
func TestSplitKeySetsConverge(t *testing.T) {
	ctx := context.Background()
	for round := range 3 {
		clk := newClock()
		opts := Options{RotationPeriod: time.Hour, Algorithms: []string{"EdDSA"}}
		// Both start at the same moment on an empty store; each sees it
		// empty (the other's write is lost with the restart).
		storeA, storeB := newStore(clk), newStore(clk)
		var a, b *Manager
		var wg sync.WaitGroup
		wg.Go(func() { a = newManager(t, storeA, clk, opts) })
		wg.Go(func() { b = newManager(t, storeB, clk, opts) })
		wg.Wait()
		kidsA, kidsB := kids(t, a, "ES256"), kids(t, b, "ES256")
		tokA, tokB := signed(t, a), signed(t, b)

		// The surviving record: B's on even rounds, A's otherwise, stored
		// as version 1 like the one A remembers.
		shared := newStore(clk)
		src := storeB
		if round%2 == 1 {
			src = storeA
		}
		data, _, err := src.GetKeys(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := shared.PutKeys(ctx, data, 0); err != nil {
			t.Fatal(err)
		}
		a.store, b.store = shared, shared

		converged := false
		for range 4 {
			clk.Advance(time.Second)
			for _, m := range []*Manager{a, b} {
				if err := m.Sync(ctx); err != nil {
					t.Fatalf("Sync: %v", err)
				}
			}
			ja, _ := a.JWKS()
			jb, _ := b.JWKS()
			if bytes.Equal(ja, jb) {
				converged = true
				break
			}
		}
		if !converged {
			t.Fatalf("round %d: replicas publish %v and %v after 4 sync rounds, want one set", round, kids(t, a, "ES256"), kids(t, b, "ES256"))
		}
		if ka, kb := activeKid(t, a, "ES256"), activeKid(t, b, "ES256"); ka != kb {
			t.Errorf("round %d: replicas sign with %s and %s", round, ka, kb)
		}
		for _, m := range []*Manager{a, b} {
			got := kids(t, m, "ES256")
			if !containsAll(got, kidsA) || !containsAll(got, kidsB) {
				t.Errorf("round %d: published %v, want every key of %v and %v", round, got, kidsA, kidsB)
			}
			for _, tok := range []string{tokA, tokB} {
				if _, _, err := m.Verify(tok); err != nil {
					t.Errorf("round %d: a token signed before the merge does not verify: %v", round, err)
				}
			}
		}
		if got := a.Regressions() + b.Regressions(); got == 0 {
			t.Errorf("round %d: Regressions() = 0 on both replicas, want the split counted", round)
		}
		set := storedSet(t, shared)
		if set.Revision < 2 || set.SetID == "" {
			t.Errorf("round %d: stored revision %d, set id %q; want >= 2 and an id", round, set.Revision, set.SetID)
		}
	}
}

// TestRollbackNotInstalled: storage replaced by an older record (a stale
// snapshot): the replica keeps its keys, logs an error naming both
// revisions, counts it, and writes the next revision forward with its
// own keys; the retired key never signs again.
func TestRollbackNotInstalled(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	log, buf := logBuffer()
	store := newStore(clk)
	m := newManager(t, store, clk, Options{RotationPeriod: time.Hour, Logger: log})
	old, _, err := store.GetKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	oldSet, _ := decodeSet(old)
	for range 2 {
		if err := m.RotateNow(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if g := storedSet(t, store).Revision; g != 3 {
		t.Fatalf("revision after creating and rotating twice = %d, want 3", g)
	}
	kid, published := activeKid(t, m, "ES256"), kids(t, m, "ES256")
	if kid == oldSet.Algs["ES256"].Active.KID {
		t.Fatal("no rotation happened")
	}

	// A snapshot of revision 1, restored as version 1.
	snap := newStore(clk)
	if _, err := snap.PutKeys(ctx, old, 0); err != nil {
		t.Fatal(err)
	}
	m.store = snap
	if err := m.Sync(ctx); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	if got := activeKid(t, m, "ES256"); got != kid {
		t.Errorf("after a rollback the replica signs with %s, want %s (the older set was installed)", got, kid)
	}
	out := buf.String()
	if !strings.Contains(out, "key set in storage is older than the one this replica holds: storage rolled back or lost data") ||
		!strings.Contains(out, "level=ERROR") || !strings.Contains(out, "storage_revision=1") || !strings.Contains(out, "replica_revision=3") {
		t.Errorf("log lacks the rollback error with both revisions:\n%s", out)
	}
	if got := m.Regressions(); got != 1 {
		t.Errorf("Regressions() = %d, want 1", got)
	}
	set := storedSet(t, snap)
	if set.Revision != 4 {
		t.Errorf("stored revision after repair = %d, want 4", set.Revision)
	}
	if set.Algs["ES256"].Active.KID != kid || !containsAll(storedKids(set, "ES256"), published) {
		t.Errorf("stored kids after repair = %v (active %s), want %v with %s active", storedKids(set, "ES256"), set.Algs["ES256"].Active.KID, published, kid)
	}

	// A new replica on the repaired store, and the old one after another
	// sync, sign with the same key; nothing more is counted.
	if err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if got := m.Regressions(); got != 1 {
		t.Errorf("Regressions() after a quiet Sync = %d, want 1", got)
	}
	if got := activeKid(t, newManager(t, snap, clk, Options{RotationPeriod: time.Hour}), "ES256"); got != kid {
		t.Errorf("a replica started on the repaired store signs with %s, want %s", got, kid)
	}
}

// TestEmptyStorageWritesForward: storage that comes back empty gets the
// replica's own set at the next revision, not a fresh unrelated one,
// even when the repair runs as part of a rotation.
func TestEmptyStorageWritesForward(t *testing.T) {
	ctx := context.Background()
	for _, rotate := range []bool{false, true} {
		clk := newClock()
		log, buf := logBuffer()
		m := newManager(t, newStore(clk), clk, Options{RotationPeriod: time.Hour, Logger: log})
		if err := m.RotateNow(ctx); err != nil {
			t.Fatal(err)
		}
		published := kids(t, m, "ES256")
		gen := storedSet(t, m.store).Revision

		m.store = newStore(clk)
		if rotate {
			if err := m.RotateNow(ctx); err != nil {
				t.Fatalf("RotateNow on empty storage: %v", err)
			}
		} else if err := m.Sync(ctx); err != nil {
			t.Fatalf("Sync: %v", err)
		}
		set := storedSet(t, m.store)
		if want := gen + 1; set.Revision != want {
			t.Errorf("rotate=%v: stored revision %d, want %d", rotate, set.Revision, want)
		}
		if got := storedKids(set, "ES256"); !containsAll(got, published) {
			t.Errorf("rotate=%v: stored kids %v, want every key of %v (a fresh set was written)", rotate, got, published)
		}
		if !strings.Contains(buf.String(), "storage rolled back or lost data") || m.Regressions() != 1 {
			t.Errorf("rotate=%v: Regressions() = %d and log:\n%s\nwant the loss logged and counted once", rotate, m.Regressions(), buf.String())
		}
	}
}

// TestRestartedReplicaAdoptsFleetSet: after Redis restarts empty, a replica
// restarted meanwhile writes a fresh revision-1 set; a replica that held
// revision 3 writes revision 4 forward with its own keys and the fresh
// set's, and the restarted replica adopts it: tokens from both verify.
func TestRestartedReplicaAdoptsFleetSet(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	a := newManager(t, newStore(clk), clk, Options{RotationPeriod: time.Hour})
	for range 2 {
		if err := a.RotateNow(ctx); err != nil {
			t.Fatal(err)
		}
	}
	kidA := activeKid(t, a, "ES256")
	tokA := signed(t, a)

	flushed := newStore(clk)
	b := newManager(t, flushed, clk, Options{RotationPeriod: time.Hour})
	tokB := signed(t, b)
	a.store = flushed
	for _, m := range []*Manager{a, b, a} {
		if err := m.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if g := storedSet(t, flushed).Revision; g != 4 {
		t.Errorf("stored revision = %d, want 4", g)
	}
	for _, m := range []*Manager{a, b} {
		if got := activeKid(t, m, "ES256"); got != kidA {
			t.Errorf("replica signs with %s, want the fleet's %s", got, kidA)
		}
		for _, tok := range []string{tokA, tokB} {
			if _, _, err := m.Verify(tok); err != nil {
				t.Errorf("token signed before the repair: %v", err)
			}
		}
	}
}

// TestLegacyWriterRotationAdopted: during a rolling upgrade a broker that
// predates revisions rotates and writes the set without one; a replica
// holding a revision installs it rather than undoing the rotation.
func TestLegacyWriterRotationAdopted(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	store := newStore(clk)
	a := newManager(t, store, clk, Options{RotationPeriod: time.Hour})
	b := newManager(t, store, clk, Options{RotationPeriod: time.Hour})
	if err := b.RotateNow(ctx); err != nil {
		t.Fatal(err)
	}
	// Strip what an old broker would not write.
	data, v, err := store.GetKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	set, _ := decodeSet(data)
	set.Revision, set.SetID, set.Default = 0, "", ""
	if data, err = json.Marshal(set); err != nil {
		t.Fatal(err)
	}
	if _, err := store.PutKeys(ctx, data, v); err != nil {
		t.Fatal(err)
	}
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := activeKid(t, a, "ES256"), set.Algs["ES256"].Active.KID; got != want {
		t.Errorf("replica signs with %s after a legacy rotation, want %s", got, want)
	}
	if a.Regressions() != 0 {
		t.Errorf("Regressions() = %d, want 0", a.Regressions())
	}
	if got := storedSet(t, store); got.Default != "ES256" || got.Revision == 0 {
		t.Errorf("stored default %q at revision %d after the sync, want ES256 recorded again at a revision", got.Default, got.Revision)
	}
}
