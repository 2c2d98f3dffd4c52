package sqlstore

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fedbroker/fedbroker/broker/storage"
)

// rowCounts counts the rows of every table that expires.
func rowCounts(t *testing.T, s *Store) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, g := range gcStatements {
		var n int
		if err := s.r.QueryRowContext(testCtx(t), "SELECT count(*) FROM "+g.table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		out[g.table] = n
	}
	return out
}

// fill stores n records of every kind that expire at exp, and one of each
// that lives an hour longer.
func fill(t *testing.T, s *Store, n int, exp time.Time) {
	t.Helper()
	ctx := testCtx(t)
	for i := range n + 1 {
		e := exp
		if i == n {
			e = exp.Add(time.Hour) // the survivors
		}
		id := fmt.Sprint(e.UnixNano(), "-", i)
		must := func(err error) {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
		}
		must(s.CreateAuthRequest(ctx, storage.AuthRequest{ID: id, Expiry: e}))
		must(s.CreateCode(ctx, "code"+id, storage.AuthCode{Expiry: e}))
		must(s.CreateSession(ctx, storage.Session{ID: "s" + id, Subject: "x", Expiry: e}))
		_, err := s.MarkSeen(ctx, "ns", id, e)
		must(err)
		_, err = s.AcquireLease(ctx, id, "h", e.Sub(s.now()))
		must(err)
		f := storage.RefreshFamily{ID: "f" + id, IdleExpiry: e, AbsoluteExpiry: e.Add(time.Hour)}
		must(s.CreateRefresh(ctx, f, f.ID+".tok"))
		must(s.RevokeFamily(ctx, "t"+id, e))
		must(s.PutReplica(ctx, storage.Replica{ID: "r" + id}, e))
	}
}

// TestGC: the collector deletes every expired row, more than one batch
// of them, and nothing live; a link, the keys and the epoch never expire.
func TestGC(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := testCtx(t)
		var clock atomic.Int64
		start := time.Now()
		clock.Store(start.UnixNano())
		s := b.fresh(t, Options{GCInterval: time.Hour, now: func() time.Time { return time.Unix(0, clock.Load()) }})
		defer s.Close()
		fill(t, s, 3, start.Add(time.Minute))
		if _, _, err := s.CreateLink(ctx, storage.Link{Key: "k", Subject: "s"}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.PutKeys(ctx, []byte("keys"), 0); err != nil {
			t.Fatal(err)
		}
		// More than a batch of one kind.
		for i := range gcBatch + 5 {
			mustExec(t, s, `INSERT INTO seen (namespace, id, until) VALUES ('bulk', $1, $2)`, fmt.Sprint(i), start.Add(time.Second).UnixNano())
		}
		n, err := s.collect(ctx)
		if err != nil || n != 0 {
			t.Fatalf("collect before anything expired = %d, %v; want 0", n, err)
		}
		clock.Add(int64(2 * time.Minute))
		n, err = s.collect(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if want := int64(3*8 + gcBatch + 5); n != want {
			t.Errorf("collect deleted %d rows, want %d", n, want)
		}
		for table, got := range rowCounts(t, s) {
			want := 1
			if table == "refresh_families" {
				want = 2 // a family and a tombstone
			}
			if got != want {
				t.Errorf("%s: %d rows left, want %d", table, got, want)
			}
		}
		if _, err := s.GetLink(ctx, "k"); err != nil {
			t.Errorf("GetLink after collect = %v", err)
		}
		if _, _, err := s.GetKeys(ctx); err != nil {
			t.Errorf("GetKeys after collect = %v", err)
		}
	})
}

// TestGCLoop: Open starts the collector, which runs every GCInterval.
func TestGCLoop(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := testCtx(t)
		s := b.fresh(t, Options{GCInterval: 50 * time.Millisecond})
		defer s.Close()
		if err := s.CreateAuthRequest(ctx, storage.AuthRequest{ID: "r", Expiry: time.Now().Add(100 * time.Millisecond)}); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(5 * time.Second); rowCounts(t, s)["auth_requests"] != 0; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the expired auth request was not collected within 5 s")
			}
		}
	})
}
