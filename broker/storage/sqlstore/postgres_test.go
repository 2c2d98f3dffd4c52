package sqlstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fedbroker/fedbroker/broker/storage"
	"github.com/fedbroker/fedbroker/broker/storage/sqlstore/pgtest"
	"github.com/fedbroker/fedbroker/broker/storage/storagetest"
)

func TestPostgresBadURL(t *testing.T) {
	const secret = "s3cr%3At-pw"
	for _, tc := range []struct{ url, want string }{
		{"", "URL is empty"},
		{"mysql://u:" + secret + "@db/x", "scheme postgres://"},
		{"postgres://u:" + secret + "@db:notaport/x", "malformed URL"},
		{"postgres:u:" + secret + "@db/x", "postgres://user@host:port/database"},
		{"postgres://u:" + secret + "@db/x?pool_max_conns=0", "pool_max_conns must be"},
		{"postgres://u:" + secret + "@db/x?sslmode=sometimes", "sslmode"},
		{"postgres://u:" + secret + "@db/x?connect_timeout=soon", "connect_timeout"},
	} {
		s, err := OpenPostgres(testCtx(t), tc.url, Options{})
		if err == nil {
			s.Close()
			t.Errorf("OpenPostgres(%q) = nil error, want one saying %q", tc.url, tc.want)
			continue
		}
		t.Logf("%q: %v", tc.url, err)
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("OpenPostgres(%q) = %v, want an error saying %q", tc.url, err, tc.want)
		}
		for _, form := range []string{secret, "s3cr:t-pw", "s3cr"} {
			if strings.Contains(err.Error(), form) {
				t.Errorf("OpenPostgres(%q) = %v: the error shows the password", tc.url, err)
			}
		}
	}
}

// TestPostgresUnreachable: nothing listening is ErrUnavailable, at once,
// and the error shows where without the password.
func TestPostgresUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	start := time.Now()
	_, err = OpenPostgres(testCtx(t), "postgres://fb:hunter2@"+addr+"/fb?sslmode=disable", Options{})
	if !isUnavailable(err) || isNotFound(err) {
		t.Fatalf("OpenPostgres of a closed port = %v, want ErrUnavailable", err)
	}
	if strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "user=fb") {
		t.Errorf("error %q: want the user and host, never the password", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("OpenPostgres took %v to fail", d)
	}
}

// TestPostgresConcurrentMigrate: replicas starting together on a new
// database apply each migration once.
func TestPostgresConcurrentMigrate(t *testing.T) {
	url := pgtest.Start(t)
	var mu sync.Mutex
	var logs bytes.Buffer
	var wg sync.WaitGroup
	stores := make([]*Store, 6)
	errs := make([]error, len(stores))
	for i := range stores {
		wg.Go(func() {
			var buf bytes.Buffer
			stores[i], errs[i] = OpenPostgres(testCtx(t), url, Options{Logger: logged(&buf)})
			mu.Lock()
			logs.Write(buf.Bytes())
			mu.Unlock()
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("store %d: %v", i, err)
		}
		defer stores[i].Close()
	}
	all := migrationNames(t, postgresDialect)
	if n := strings.Count(logs.String(), "applied storage migration"); n != len(all) {
		t.Errorf("the %d migrations were applied %d times, want once each:\n%s", len(all), n, logs.String())
	}
	var n int
	if err := stores[0].r.QueryRowContext(testCtx(t), `SELECT count(*) FROM schema_migrations`).Scan(&n); err != nil || n != len(all) {
		t.Errorf("schema_migrations rows = %d, %v; want %d", n, err, len(all))
	}
	for i, s := range stores {
		if p, err := s.PendingMigrations(testCtx(t)); err != nil || len(p) != 0 {
			t.Errorf("store %d: PendingMigrations = %v, %v", i, p, err)
		}
	}
}

// TestPostgresMigrateDryRun: without migrating, the store lists what is
// pending and changes nothing.
func TestPostgresMigrateDryRun(t *testing.T) {
	ctx := testCtx(t)
	s := openPostgres(t, pgtest.Start(t), Options{NoMigrate: true})
	defer s.Close()
	for range 2 {
		if p, err := s.PendingMigrations(ctx); err != nil || !slices.Equal(p, migrationNames(t, postgresDialect)) {
			t.Fatalf("PendingMigrations = %v, %v; want %v", p, err, migrationNames(t, postgresDialect))
		}
	}
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if p, err := s.PendingMigrations(ctx); err != nil || len(p) != 0 {
		t.Fatalf("PendingMigrations after Migrate = %v, %v", p, err)
	}
}

// TestPostgresRestart: while PostgreSQL is down every method is
// ErrUnavailable (never ErrNotFound); once it is back the same Store
// works again, with everything committed before the crash.
func TestPostgresRestart(t *testing.T) {
	srv := pgtest.StartServer(t)
	ctx := testCtx(t)
	s := openPostgres(t, srv.URL(), Options{})
	defer s.Close()
	fx := storagetest.NewEpochFixture(t, s)
	if _, _, err := s.RotateRefresh(ctx, fx.Rotated, fx.Current, time.Now(), time.Hour, storage.Retry{}); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	storagetest.RunUnavailable(t, s)
	srv.Restart()
	deadline := time.Now().Add(10 * time.Second)
	for s.Ping(ctx) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("the store did not reconnect: %v", s.Ping(ctx))
		}
		time.Sleep(50 * time.Millisecond)
	}
	for i := range 20 { // every pooled connection is a new one
		if _, err := s.GetRefresh(ctx, fx.Current); err != nil {
			t.Fatalf("GetRefresh #%d after the restart = %v", i, err)
		}
	}
	if _, _, err := s.RotateRefresh(ctx, fx.Rotated, "fam1.x", time.Now(), time.Hour, storage.Retry{}); !errors.Is(err, storage.ErrReused) {
		t.Errorf("RotateRefresh of a token rotated before the crash = %v, want ErrReused", err)
	}
	if s.Regressions() != 0 {
		t.Errorf("regressions after a crash that lost nothing = %d", s.Regressions())
	}
}

// TestPostgresRestoreOnReconnect: PostgreSQL comes back from a restore
// (the epoch row behind what the store saw): the first statement on a new
// connection, even a read, already sees the new epoch.
func TestPostgresRestoreOnReconnect(t *testing.T) {
	srv := pgtest.StartServer(t)
	ctx := testCtx(t)
	s := openPostgres(t, srv.URL(), Options{})
	defer s.Close()
	fx := storagetest.NewEpochFixture(t, s)
	id, since, n := storedEpoch(t, s)
	if _, _, err := s.RotateRefresh(ctx, fx.Rotated, fx.Current, time.Now(), time.Hour, storage.Retry{}); err != nil {
		t.Fatal(err)
	}
	mustExec(t, s, `UPDATE epoch SET id = $1, since_ns = $2, n = $3`, id, since, n)
	mustExec(t, s, `UPDATE refresh_families SET cur = $1 WHERE id = 'fam1'`, storage.Hash(fx.Rotated))
	srv.Restart()
	time.Sleep(2 * time.Millisecond)
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if _, err = s.GetSession(ctx, fx.Session); !isUnavailable(err) {
			break
		}
	}
	if !isNotFound(err) {
		t.Errorf("GetSession after the restore = %v, want ErrNotFound", err)
	}
	if s.Regressions() != 1 {
		t.Errorf("regressions = %d, want 1", s.Regressions())
	}
	fx.WantForgotten(t, s)
}

// TestPostgresNotify: a key set stored by one Store reaches another's
// subscribers within a second, also after the LISTEN connection was lost
// (with a value for the re-subscription itself).
func TestPostgresNotify(t *testing.T) {
	srv := pgtest.StartServer(t)
	ctx := testCtx(t)
	a := openPostgres(t, srv.URL(), Options{})
	defer a.Close()
	b := openPostgres(t, srv.URL(), Options{})
	defer b.Close()
	sub, err := b.SubscribeKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	receive := func(what string, within time.Duration) {
		t.Helper()
		select {
		case _, ok := <-sub:
			if !ok {
				t.Fatalf("%s: channel closed", what)
			}
		case <-time.After(within):
			t.Fatalf("%s: no notification within %v", what, within)
		}
	}
	v, err := a.PutKeys(ctx, []byte("one"), 0)
	if err != nil {
		t.Fatal(err)
	}
	receive("PutKeys on another store", time.Second)
	// A failed compare-and-swap announces nothing.
	if _, err := a.PutKeys(ctx, []byte("stale"), 0); !errors.Is(err, storage.ErrConflict) {
		t.Fatal(err)
	}
	select {
	case <-sub:
		t.Fatal("notified of a PutKeys that did not store anything")
	case <-time.After(200 * time.Millisecond):
	}
	srv.Restart()
	receive("re-subscription after PostgreSQL restarted", 10*time.Second)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err = a.PutKeys(ctx, []byte(fmt.Sprint("two", v)), v); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("PutKeys after the restart: %v", err)
		}
	}
	receive("PutKeys after the restart", time.Second)
	cctx, cancel := context.WithCancel(ctx)
	sub2, err := b.SubscribeKeys(cctx)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case _, ok := <-sub2:
		if ok {
			t.Error("value on a cancelled subscription")
		}
	case <-time.After(5 * time.Second):
		t.Error("channel not closed after its context was cancelled")
	}
	b.Close()
	deadline := time.After(5 * time.Second)
	for open := true; open; {
		select {
		case _, open = <-sub:
		case <-deadline:
			t.Fatal("channel not closed after Close")
		}
	}
}
