package redis

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/fedbroker/fedbroker/broker/storage"
	"github.com/fedbroker/fedbroker/broker/storage/redis/redistest"
	"github.com/fedbroker/fedbroker/broker/storage/storagetest"
)

func logged(buf *bytes.Buffer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// TestEpochFirstStart: a new store starts an epoch that distrusts
// nothing (Since zero: there was nothing before) and counts no regression;
// a second client adopts it.
func TestEpochFirstStart(t *testing.T) {
	url := redistest.StartServer(t).URL()
	a := open(t, url, Options{})
	defer a.Close()
	if got := a.Since(); !got.IsZero() {
		t.Errorf("Since of a new store = %v, want zero", got)
	}
	b := open(t, url, Options{})
	defer b.Close()
	if !b.Since().IsZero() || a.epoch.Seen() == 0 || b.epoch.Seen() <= a.epoch.Seen() {
		t.Errorf("second client: Since %v, counters %d then %d; want zero and increasing", b.Since(), a.epoch.Seen(), b.epoch.Seen())
	}
	if a.Regressions()+b.Regressions() != 0 {
		t.Errorf("regressions on a new store = %d, %d; want 0", a.Regressions(), b.Regressions())
	}
}

// TestEpochRollback restores the epoch record to an earlier state while
// the records stay, as a restore from an older snapshot does: the next
// tick (of any kind) detects it, and everything from before is refused.
func TestEpochRollback(t *testing.T) {
	ctx := context.Background()
	url := redistest.StartServer(t).URL()
	var logA bytes.Buffer
	a := open(t, url, Options{Logger: logged(&logA)})
	defer a.Close()
	b := open(t, url, Options{})
	defer b.Close()
	fx := storagetest.NewEpochFixture(t, a)
	c := goredis.NewClient(&goredis.Options{Addr: strings.TrimSuffix(strings.TrimPrefix(url, "redis://"), "/0")})
	defer c.Close()
	snapshot, err := c.HGetAll(ctx, a.epochKey()).Result()
	if err != nil || len(snapshot) != 3 {
		t.Fatalf("epoch record = %v, %v", snapshot, err)
	}
	// After the "snapshot": a rotation, seen by both clients' ticks.
	if _, _, err := a.RotateRefresh(ctx, fx.Rotated, fx.Current, time.Now(), time.Hour, storage.Retry{}); err != nil {
		t.Fatal(err)
	}
	if err := b.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	// Restore the rotation's undoing: the family's current token back to
	// the rotated one, and the epoch record as it was.
	if err := c.HSet(ctx, a.famKeys("fam1")[0], "cur", storage.Hash(fx.Rotated)).Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.HSet(ctx, a.epochKey(), snapshot).Err(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Millisecond) // Since is after everything created above
	fx.WantForgotten(t, a)
	if a.Regressions() != 1 {
		t.Errorf("regressions = %d, want 1", a.Regressions())
	}
	if !strings.Contains(logA.String(), `"level":"ERROR"`) || !strings.Contains(logA.String(), "rolled back") {
		t.Errorf("no ERROR about the rollback in the log:\n%s", logA.String())
	}
	// The other client adopts the new epoch without counting it again.
	if err := b.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	if !b.Since().Equal(a.Since()) || b.Regressions() != 0 {
		t.Errorf("other client: Since %v (want %v), regressions %d (want 0)", b.Since(), a.Since(), b.Regressions())
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
}

// TestEpochEmptied: a store flushed under running clients is a loss; the
// first client to tick counts it, the others adopt the new epoch.
func TestEpochEmptied(t *testing.T) {
	ctx := context.Background()
	srv := redistest.StartServer(t)
	a := open(t, srv.URL(), Options{})
	defer a.Close()
	b := open(t, srv.URL(), Options{})
	defer b.Close()
	first := time.Now()
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
	defer c.Close()
	if err := c.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
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
}

// TestEpochCrashRestart is the real thing: Redis with RDB snapshots is
// killed after a rotation that the snapshot does not hold, and restarts
// from it. The very first command after the restart, with no heartbeat in
// between, must not answer from the rolled-back state: a new connection
// ticks before it carries anything.
func TestEpochCrashRestart(t *testing.T) {
	ctx := context.Background()
	srv := redistest.StartServer(t, "--save", "3600 1")
	a := open(t, srv.URL(), Options{})
	defer a.Close()
	fx := storagetest.NewEpochFixture(t, a)
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr(), MaxRetries: -1})
	defer c.Close()
	if err := c.Save(ctx).Err(); err != nil {
		t.Fatalf("SAVE: %v", err)
	}
	if _, _, err := a.RotateRefresh(ctx, fx.Rotated, fx.Current, time.Now(), time.Hour, storage.Retry{}); err != nil {
		t.Fatal(err)
	}
	if err := a.DeleteSession(ctx, fx.Session); err != nil { // a logout
		t.Fatal(err)
	}
	srv.Restart()
	waitPing(t, c)
	// Without the epoch, the rotated token would rotate again (the
	// snapshot has it current) and the logged-out session would be back.
	fx.WantForgotten(t, a)
	if a.Regressions() != 1 {
		t.Errorf("regressions = %d, want 1", a.Regressions())
	}
}

// TestEpochTickInPipeline: a security write carries its tick in the same
// round trip, also right after Redis forgot the scripts (NOSCRIPT).
func TestEpochTickInPipeline(t *testing.T) {
	ctx := context.Background()
	srv := redistest.StartServer(t)
	a := open(t, srv.URL(), Options{})
	defer a.Close()
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
	defer c.Close()
	if err := c.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	seen := a.epoch.Seen()
	if _, err := a.MarkSeen(ctx, "revoked_at", "jti-1", time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := a.ConsumeCode(ctx, "no-such-code"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("ConsumeCode of an unknown code = %v", err)
	}
	if err := a.RevokeFamily(ctx, "fam9", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got := a.epoch.Seen(); got < seen+3 {
		t.Errorf("epoch counter after three security writes = %d, want at least %d", got, seen+3)
	}
	n, err := c.HGet(ctx, a.epochKey(), "n").Int64()
	if err != nil || n != a.epoch.Seen() {
		t.Errorf("stored counter = %d (%v), want the client's %d", n, err, a.epoch.Seen())
	}
}

// TestTickFailureKeepsTheAnswer: when the tick at the end of a write's
// script fails (here the epoch key holds a string), the write is done
// (Redis does not undo a script's writes) and its answer still reaches
// the caller: a rotated refresh token is handed out, not lost behind an
// error; the failed tick is logged.
func TestTickFailureKeepsTheAnswer(t *testing.T) {
	ctx := context.Background()
	srv := redistest.StartServer(t)
	var buf bytes.Buffer
	a := open(t, srv.URL(), Options{Logger: logged(&buf)})
	defer a.Close()
	f, toks := storagetest.RotateMany(t, a, 1) // the connection is open and ticked
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
	defer c.Close()
	if err := c.Set(ctx, a.epochKey(), "not a hash", 0).Err(); err != nil {
		t.Fatal(err)
	}
	next := f.ID + ".after"
	if _, _, err := a.RotateRefresh(ctx, toks[1], next, time.Now(), time.Hour, storage.Retry{}); err != nil {
		t.Fatalf("RotateRefresh with a failing tick = %v, want nil", err)
	}
	if cur, err := c.HGet(ctx, a.famKeys(f.ID)[0], "cur").Result(); err != nil || cur != storage.Hash(next) {
		t.Fatalf("family's current token hash = %q (%v), want the rotated one's", cur, err)
	}
	if err := a.RevokeFamily(ctx, f.ID, time.Now().Add(time.Hour)); err != nil {
		t.Fatalf("RevokeFamily with a failing tick = %v, want nil", err)
	}
	if !strings.Contains(buf.String(), "storage epoch tick failed") {
		t.Errorf("log %q does not mention the failed tick", buf.String())
	}
}

// TestStartEpoch: an operator distrusts everything from before now (after
// restoring a backup while no broker ran); every client adopts the new
// epoch and refuses what came before, without counting a regression.
func TestStartEpoch(t *testing.T) {
	ctx := context.Background()
	url := redistest.StartServer(t).URL()
	a := open(t, url, Options{})
	defer a.Close()
	fx := storagetest.NewEpochFixture(t, a)
	op := open(t, url, Options{})
	defer op.Close()
	time.Sleep(2 * time.Millisecond)
	e, err := op.StartEpoch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if e.Since.IsZero() || e.N < storage.EpochJump {
		t.Errorf("new epoch = %+v, want one that starts now, ahead of every counter", e)
	}
	if err := a.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	if !a.Since().Equal(e.Since) || a.Regressions() != 0 {
		t.Errorf("client after StartEpoch: Since %v (want %v), regressions %d (want 0)", a.Since(), e.Since, a.Regressions())
	}
	fx.WantForgotten(t, a)
}
