package sqlstore

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/fedbroker/fedbroker/broker/storage"
	"github.com/fedbroker/fedbroker/broker/storage/storagetest"
)

func logged(buf *bytes.Buffer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// storedEpoch reads the epoch row.
func storedEpoch(t *testing.T, s *Store) (id string, since, n int64) {
	t.Helper()
	if err := s.w.QueryRowContext(testCtx(t), `SELECT id, since_ns, n FROM epoch WHERE slot = 1`).Scan(&id, &since, &n); err != nil {
		t.Fatalf("read epoch: %v", err)
	}
	return id, since, n
}

// TestEpochFirstStart: a new database starts an epoch that distrusts
// nothing and counts no regression; a second store adopts it.
func TestEpochFirstStart(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		a := be.fresh(t, Options{})
		defer a.Close()
		if got := a.Since(); !got.IsZero() {
			t.Errorf("Since of a new store = %v, want zero", got)
		}
		b := be.again(t, a, Options{})
		defer b.Close()
		if !b.Since().IsZero() || a.epoch.Seen() == 0 || b.epoch.Seen() <= a.epoch.Seen() {
			t.Errorf("second store: Since %v, counters %d then %d; want zero and increasing", b.Since(), a.epoch.Seen(), b.epoch.Seen())
		}
		if a.Regressions()+b.Regressions() != 0 {
			t.Errorf("regressions on a new store = %d, %d; want 0", a.Regressions(), b.Regressions())
		}
	})
}

// TestEpochRollback rewrites the epoch row and a family's row back to an
// earlier state while the rest stays, as a restore from an older backup
// does: the next tick (of any kind) detects it, and everything from before
// is refused.
func TestEpochRollback(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		ctx := testCtx(t)
		var logA bytes.Buffer
		a := be.fresh(t, Options{Logger: logged(&logA)})
		defer a.Close()
		b := be.again(t, a, Options{})
		defer b.Close()
		fx := storagetest.NewEpochFixture(t, a)
		id, since, n := storedEpoch(t, a)
		// After the "backup": a rotation and a logout, seen by both stores.
		if _, _, err := a.RotateRefresh(ctx, fx.Rotated, fx.Current, time.Now(), time.Hour, storage.Retry{}); err != nil {
			t.Fatal(err)
		}
		if err := b.Heartbeat(ctx); err != nil {
			t.Fatal(err)
		}
		// The restore: the family's current token back to the rotated one,
		// and the epoch row as it was.
		mustExec(t, a, `UPDATE refresh_families SET cur = $1 WHERE id = 'fam1'`, storage.Hash(fx.Rotated))
		mustExec(t, a, `UPDATE epoch SET id = $1, since_ns = $2, n = $3`, id, since, n)
		time.Sleep(2 * time.Millisecond) // Since is after everything created above
		// A read alone does not tick: the rotation, a security write, does,
		// finds the rollback and is refused.
		fx.WantForgotten(t, a)
		if a.Regressions() != 1 {
			t.Errorf("regressions = %d, want 1", a.Regressions())
		}
		if !strings.Contains(logA.String(), `"level":"ERROR"`) || !strings.Contains(logA.String(), "rolled back") {
			t.Errorf("no ERROR about the rollback in the log:\n%s", logA.String())
		}
		// The other store adopts the new epoch without counting it again.
		if err := b.Heartbeat(ctx); err != nil {
			t.Fatal(err)
		}
		if !b.Since().Equal(a.Since()) || b.Regressions() != 0 {
			t.Errorf("other store: Since %v (want %v), regressions %d (want 0)", b.Since(), a.Since(), b.Regressions())
		}
		fx.WantForgotten(t, b)
		// What is created afterwards works.
		now := time.Now()
		fam := storage.RefreshFamily{ID: "fam3", CreatedAt: now, LastUsed: now, IdleExpiry: now.Add(time.Hour), AbsoluteExpiry: now.Add(time.Hour),
			Grant: storage.Grant{ClientID: "app", Subject: "alice", AuthTime: now}}
		if err := b.CreateRefresh(ctx, fam, "fam3.a"); err != nil {
			t.Fatal(err)
		}
		if _, _, err := a.RotateRefresh(ctx, "fam3.a", "fam3.b", time.Now(), time.Hour, storage.Retry{}); err != nil {
			t.Errorf("RotateRefresh of a family created after the new epoch = %v", err)
		}
	})
}

// TestEpochEmptied: an epoch row that vanished (the database emptied under
// running stores) is a loss; the first store to tick counts it, the others
// adopt the new epoch.
func TestEpochEmptied(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		ctx := testCtx(t)
		a := be.fresh(t, Options{})
		defer a.Close()
		b := be.again(t, a, Options{})
		defer b.Close()
		first := time.Now()
		mustExec(t, a, `DELETE FROM epoch`)
		time.Sleep(2 * time.Millisecond)
		if err := a.Heartbeat(ctx); err != nil {
			t.Fatal(err)
		}
		if err := b.Heartbeat(ctx); err != nil {
			t.Fatal(err)
		}
		if a.Regressions() != 1 || b.Regressions() != 0 {
			t.Errorf("regressions = %d, %d; want 1, 0 (the first to tick counts)", a.Regressions(), b.Regressions())
		}
		if !a.Since().After(first) || !b.Since().Equal(a.Since()) {
			t.Errorf("Since after the loss = %v, %v; want one new epoch after %v", a.Since(), b.Since(), first)
		}
	})
}

// TestEpochTickInTransaction: every security write advances the stored
// counter in its own transaction, and the store saw exactly that value.
func TestEpochTickInTransaction(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		ctx := testCtx(t)
		s := be.fresh(t, Options{})
		defer s.Close()
		fx := storagetest.NewEpochFixture(t, s)
		seen := s.epoch.Seen()
		steps := []struct {
			name string
			run  func() error
		}{
			{"MarkSeen", func() error {
				_, err := s.MarkSeen(ctx, "revoked_at", "jti-1", time.Now().Add(time.Minute))
				return err
			}},
			{"ConsumeCode", func() error { _, err := s.ConsumeCode(ctx, fx.Code); return err }},
			{"RotateRefresh", func() error {
				_, _, err := s.RotateRefresh(ctx, fx.Rotated, fx.Current, time.Now(), time.Hour, storage.Retry{})
				return err
			}},
			{"RevokeFamily", func() error { return s.RevokeFamily(ctx, "fam9", time.Now().Add(time.Hour)) }},
			{"DeleteSession", func() error { return s.DeleteSession(ctx, fx.Session) }},
			{"RevokeSubject", func() error { _, _, err := s.RevokeSubject(ctx, "alice"); return err }},
		}
		for i, st := range steps {
			if err := st.run(); err != nil {
				t.Fatalf("%s: %v", st.name, err)
			}
			_, _, n := storedEpoch(t, s)
			if want := seen + int64(i) + 1; n != want || s.epoch.Seen() != want {
				t.Errorf("after %s: stored counter %d, seen %d; want %d", st.name, n, s.epoch.Seen(), want)
			}
		}
		// Reads and writes that decide nothing about security do not tick.
		before := s.epoch.Seen()
		if _, err := s.GetSession(ctx, "nobody"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatal(err)
		}
		if _, err := s.ConsumeCode(ctx, "no-such-code"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatal(err)
		}
		if _, err := s.PutKeys(ctx, []byte("k"), 0); err != nil {
			t.Fatal(err)
		}
		if s.epoch.Seen() != before {
			t.Errorf("counter moved from %d to %d without a security write", before, s.epoch.Seen())
		}
	})
}

// TestStartEpoch: an operator's new epoch (after restoring a backup with
// every broker stopped) refuses everything from before, on every store.
func TestStartEpoch(t *testing.T) {
	eachBackend(t, func(t *testing.T, be backend) {
		ctx := testCtx(t)
		a := be.fresh(t, Options{})
		defer a.Close()
		fx := storagetest.NewEpochFixture(t, a)
		// The "restored" database, opened by a broker that remembers nothing.
		b := be.again(t, a, Options{})
		defer b.Close()
		time.Sleep(2 * time.Millisecond)
		if _, err := b.StartEpoch(ctx); err != nil {
			t.Fatal(err)
		}
		if b.Since().IsZero() || b.Regressions() != 0 {
			t.Errorf("after StartEpoch: Since %v, regressions %d; want a start and none", b.Since(), b.Regressions())
		}
		fx.WantForgotten(t, b)
		if err := a.Heartbeat(ctx); err != nil {
			t.Fatal(err)
		}
		if !a.Since().Equal(b.Since()) {
			t.Errorf("other store's Since = %v, want the new epoch's %v", a.Since(), b.Since())
		}
	})
}
