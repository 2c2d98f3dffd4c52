package sqlstore

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/fedbroker/fedbroker/broker/storage"
)

// TestReplicas runs the replica registry's tests of this backend on each
// dialect (one PostgreSQL server for all); the conformance suite has the
// rest.
func TestReplicas(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		t.Run("GC", func(t *testing.T) { testReplicasGC(t, b) })
		t.Run("NotSecurityWrites", func(t *testing.T) { testReplicasNotSecurityWrites(t, b) })
		t.Run("CorruptOrClosed", func(t *testing.T) { testReplicasCorruptOrClosed(t, b) })
	})
}

// replicaRows counts the rows of the replicas table, expired or not.
func replicaRows(t *testing.T, s *Store) int {
	t.Helper()
	var n int
	if err := s.r.QueryRowContext(testCtx(t), `SELECT count(*) FROM replicas`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// testReplicasGC: an expired record is absent at once and its row is
// deleted by the garbage collector; a live one stays; a past until
// deletes the row at once.
func testReplicasGC(t *testing.T, b backend) {
	ctx := testCtx(t)
	var clock atomic.Int64
	start := time.Now()
	clock.Store(start.UnixNano())
	s := b.fresh(t, Options{GCInterval: time.Hour, now: func() time.Time { return time.Unix(0, clock.Load()) }})
	defer s.Close()
	for id, until := range map[string]time.Time{"old": start.Add(time.Minute), "new": start.Add(2 * time.Hour)} {
		if err := s.PutReplica(ctx, storage.Replica{ID: id}, until); err != nil {
			t.Fatal(err)
		}
	}
	clock.Add(int64(2 * time.Minute))
	if got, err := s.ListReplicas(ctx); err != nil || len(got) != 1 || got[0].ID != "new" {
		t.Fatalf("ListReplicas() = %+v, %v; want only new", got, err)
	}
	if n := replicaRows(t, s); n != 2 {
		t.Fatalf("replicas rows before collect = %d, want 2", n)
	}
	if _, err := s.collect(ctx); err != nil {
		t.Fatal(err)
	}
	if n := replicaRows(t, s); n != 1 {
		t.Errorf("replicas rows after collect = %d, want 1", n)
	}
	if err := s.PutReplica(ctx, storage.Replica{ID: "new"}, start); err != nil {
		t.Fatal(err)
	}
	if n := replicaRows(t, s); n != 0 {
		t.Errorf("replicas rows after a put with a past until = %d, want 0", n)
	}
}

// testReplicasNotSecurityWrites: writing and listing records neither
// ticks the storage epoch nor is exported.
func testReplicasNotSecurityWrites(t *testing.T, b backend) {
	ctx := testCtx(t)
	s := b.fresh(t, Options{})
	defer s.Close()
	// A connection's first use may tick (see Store.ready): use them first.
	if _, err := s.ListReplicas(ctx); err != nil {
		t.Fatal(err)
	}
	_, _, before := storedEpoch(t, s)
	seen := s.epoch.Seen()
	now := time.Now()
	for _, until := range []time.Time{now.Add(time.Hour), now.Add(2 * time.Hour), now.Add(-time.Second), now.Add(time.Hour)} {
		if err := s.PutReplica(ctx, storage.Replica{ID: "r", Seen: time.Now()}, until); err != nil {
			t.Fatal(err)
		}
		if _, err := s.ListReplicas(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, after := storedEpoch(t, s); after != before || s.epoch.Seen() != seen {
		t.Errorf("epoch counter moved from %d (seen %d) to %d (seen %d) on replica records", before, seen, after, s.epoch.Seen())
	}
	err := s.Export(ctx, func(it storage.Item) error {
		t.Errorf("Export of a store holding only a replica record: got item %+v", it)
		return nil
	})
	if err != nil {
		t.Fatalf("Export() = %v", err)
	}
}

// testReplicasCorruptOrClosed: a corrupt row and a closed store are
// ErrUnavailable.
func testReplicasCorruptOrClosed(t *testing.T, b backend) {
	ctx := testCtx(t)
	s := b.fresh(t, Options{})
	if err := s.PutReplica(ctx, storage.Replica{ID: "r"}, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	mustExec(t, s, `UPDATE replicas SET data = $1`, []byte("{not json"))
	if _, err := s.ListReplicas(ctx); !isUnavailable(err) {
		t.Errorf("ListReplicas with a corrupt row: error = %v, want ErrUnavailable", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.PutReplica(ctx, storage.Replica{ID: "r"}, time.Now().Add(time.Hour)); !isUnavailable(err) {
		t.Errorf("PutReplica after Close: error = %v, want ErrUnavailable", err)
	}
	if _, err := s.ListReplicas(ctx); !isUnavailable(err) {
		t.Errorf("ListReplicas after Close: error = %v, want ErrUnavailable", err)
	}
}
