package sqlstore

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fedbroker/fedbroker/broker/storage"
)

func TestSQLiteBadPaths(t *testing.T) {
	dir := t.TempDir()
	notDB := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(notDB, []byte("hello, this is not a database at all"), 0o600); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "plain")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ path, want string }{
		{"", "path is empty"},
		{"  ", "path is empty"},
		{":memory:", "not a file path"},
		{"file:x.db?mode=memory", "not a file path"},
		{filepath.Join(dir, "missing", "fb.db"), "does not exist"},
		{dir, "is a directory"},
		{filepath.Join(file, "fb.db"), "is not a directory"},
		{notDB, "is not a SQLite database"},
	} {
		s, err := OpenSQLite(testCtx(t), tc.path, Options{})
		if err == nil {
			s.Close()
			t.Errorf("OpenSQLite(%q) = nil error, want one saying %q", tc.path, tc.want)
			continue
		}
		t.Logf("%q: %v", tc.path, err)
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("OpenSQLite(%q) = %v, want an error saying %q", tc.path, err, tc.want)
		}
	}
	if os.Geteuid() != 0 {
		ro := filepath.Join(dir, "ro")
		if err := os.Mkdir(ro, 0o500); err != nil {
			t.Fatal(err)
		}
		if _, err := OpenSQLite(testCtx(t), filepath.Join(ro, "fb.db"), Options{}); err == nil || !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("OpenSQLite in a read-only directory = %v, want permission denied", err)
		}
	}
}

// TestSQLiteFile: the file is created private, in WAL mode with
// synchronous=FULL, and a path with odd characters works.
func TestSQLiteFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "odd dir?#%", "fb 1.db")
	if err := os.Mkdir(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	s := openSQLite(t, p, Options{})
	defer s.Close()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatalf("database file not at %s: %v", p, err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("database file mode = %v, want 0600", fi.Mode().Perm())
	}
	for pragma, want := range map[string]string{"journal_mode": "wal", "synchronous": "2", "foreign_keys": "1", "busy_timeout": fmt.Sprint(SQLiteBusyTimeout)} {
		var got string
		if err := s.w.QueryRowContext(testCtx(t), "PRAGMA "+pragma).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("writer PRAGMA %s = %s, want %s", pragma, got, want)
		}
	}
	if _, err := s.r.ExecContext(testCtx(t), `DELETE FROM links`); err == nil {
		t.Errorf("a write on a read connection succeeded; want them read-only")
	}
}

// TestSQLiteMigrateDryRun: a store opened without migrating lists what is
// pending, applies it on request, and then has nothing pending.
func TestSQLiteMigrateDryRun(t *testing.T) {
	ctx := testCtx(t)
	p := sqlitePath(t)
	s := openSQLite(t, p, Options{NoMigrate: true})
	defer s.Close()
	pending, err := s.PendingMigrations(ctx)
	if all := migrationNames(t, sqliteDialect); err != nil || !slices.Equal(pending, all) {
		t.Fatalf("PendingMigrations on a new file = %v, %v; want %v", pending, err, all)
	}
	if _, _, err := s.GetKeys(ctx); !isUnavailable(err) {
		t.Errorf("GetKeys before migrating = %v, want ErrUnavailable", err)
	}
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("second Migrate = %v", err)
	}
	if pending, err := s.PendingMigrations(ctx); err != nil || len(pending) != 0 {
		t.Fatalf("PendingMigrations after Migrate = %v, %v; want none", pending, err)
	}
	if _, _, err := s.GetKeys(ctx); !isNotFound(err) {
		t.Errorf("GetKeys after migrating = %v, want ErrNotFound", err)
	}
	var n int
	if err := s.r.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations`).Scan(&n); err != nil || n != len(migrationNames(t, sqliteDialect)) {
		t.Errorf("schema_migrations rows = %d, %v; want %d", n, err, len(migrationNames(t, sqliteDialect)))
	}
}

// TestSQLiteTwoStores: two Stores on one file (as the broker and a CLI
// beside it) take turns through the busy timeout: the atomic operations
// stay atomic across them and the file stays intact.
func TestSQLiteTwoStores(t *testing.T) {
	ctx := testCtx(t)
	p := sqlitePath(t)
	a := openSQLite(t, p, Options{})
	defer a.Close()
	b := openSQLite(t, p, Options{})
	defer b.Close()
	stores := []*Store{a, b}

	code := storage.AuthCode{ClientID: "app", Expiry: time.Now().Add(time.Minute)}
	if err := a.CreateCode(ctx, "the-code", code); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	fam := storage.RefreshFamily{ID: "f", CreatedAt: now, LastUsed: now, IdleExpiry: now.Add(time.Hour), AbsoluteExpiry: now.Add(time.Hour)}
	if err := b.CreateRefresh(ctx, fam, "f.0"); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 200)
	results := make(chan string, 200)
	done := make(chan struct{})
	go func() {
		defer close(done)
		var wg sync.WaitGroup
		for i := range 100 {
			s := stores[i%2]
			wg.Go(func() {
				_, err := s.ConsumeCode(ctx, "the-code")
				results <- "code " + errName(err)
			})
			wg.Go(func() {
				_, _, err := s.RotateRefresh(ctx, "f.0", fmt.Sprintf("f.%d", i+1), time.Now(), time.Hour, storage.Retry{})
				results <- "rotate " + errName(err)
			})
			wg.Go(func() {
				if err := s.CreateAuthRequest(ctx, storage.AuthRequest{ID: fmt.Sprint("r", i), Expiry: time.Now().Add(time.Hour)}); err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
	}()
	<-done
	close(errs)
	close(results)
	for err := range errs {
		t.Errorf("CreateAuthRequest across two stores: %v", err)
	}
	count := map[string]int{}
	for r := range results {
		count[r]++
	}
	if count["code ok"] != 1 || count["code used"] != 99 {
		t.Errorf("ConsumeCode across two stores: %v; want 1 ok and 99 used", count)
	}
	if count["rotate ok"] != 1 || count["rotate ok"]+count["rotate reused"]+count["rotate notfound"] != 100 {
		t.Errorf("RotateRefresh across two stores: %v; want 1 ok, the rest reuse or not found", count)
	}
	var check string
	if err := a.w.QueryRowContext(ctx, `PRAGMA integrity_check`).Scan(&check); err != nil || check != "ok" {
		t.Errorf("integrity_check = %q, %v", check, err)
	}
}

func errName(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, storage.ErrAlreadyUsed):
		return "used"
	case errors.Is(err, storage.ErrReused):
		return "reused"
	case errors.Is(err, storage.ErrNotFound):
		return "notfound"
	}
	return err.Error()
}

// childEnv names the database a re-executed test binary writes to until
// it is killed (TestSQLiteKilled).
const childEnv = "SQLSTORE_TEST_KILL_CHILD"

// TestSQLiteKilled: a process that wrote a family, rotations, a
// revocation, a logout, a replay record, a link and keys is SIGKILLed
// while it keeps rotating; reopened, the file has every acknowledged
// write, and every token rotated away stays dead.
func TestSQLiteKilled(t *testing.T) {
	if p := os.Getenv(childEnv); p != "" {
		killChild(t, p)
		return
	}
	p := sqlitePath(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestSQLiteKilled$", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"="+p)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := -1
	sc := bufio.NewScanner(out)
	deadline := time.Now().Add(20 * time.Second)
	for sc.Scan() && time.Now().Before(deadline) {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "rotated "); ok {
			acked, _ = strconv.Atoi(v)
			if acked >= 30 {
				break // mid-stream: the child is rotating on
			}
		}
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	if acked < 30 {
		t.Fatalf("the child acknowledged %d rotations before the deadline", acked)
	}

	ctx := testCtx(t)
	s := openSQLite(t, p, Options{})
	defer s.Close()
	if s.Regressions() != 0 || !s.Since().IsZero() {
		t.Errorf("reopened: regressions %d, Since %v; want none", s.Regressions(), s.Since())
	}
	// The last acknowledged token, or one the child rotated to after it
	// without saying so, is current; the ones before are reuse.
	cur := -1
	for k := acked; k <= acked+1; k++ {
		if _, err := s.GetRefresh(ctx, fmt.Sprintf("fam.%d", k)); err == nil {
			cur = k
		}
	}
	if cur < 0 {
		t.Fatalf("neither fam.%d nor fam.%d is current after the kill: an acknowledged rotation was lost", acked, acked+1)
	}
	if _, err := s.GetSession(ctx, "session-deleted"); !isNotFound(err) {
		t.Errorf("GetSession of a deleted session = %v, want ErrNotFound", err)
	}
	if _, err := s.GetSession(ctx, "session-kept"); err != nil {
		t.Errorf("GetSession of a kept session = %v", err)
	}
	if fresh, err := s.MarkSeen(ctx, "revoked_at", "jti-1", time.Now().Add(time.Hour)); err != nil || fresh {
		t.Errorf("MarkSeen of a recorded id = %v, %v; want false", fresh, err)
	}
	f := storage.RefreshFamily{ID: "revoked", IdleExpiry: time.Now().Add(time.Hour), AbsoluteExpiry: time.Now().Add(time.Hour)}
	if err := s.CreateRefresh(ctx, f, "revoked.x"); !isNotFound(err) {
		t.Errorf("CreateRefresh of a revoked family = %v, want ErrNotFound", err)
	}
	if l, err := s.GetLink(ctx, "email:ada@example.com"); err != nil || l.Subject != "sub-ada" {
		t.Errorf("GetLink = %v, %v", l, err)
	}
	if data, v, err := s.GetKeys(ctx); err != nil || string(data) != "keys" || v != 1 {
		t.Errorf("GetKeys = %q, %d, %v", data, v, err)
	}
	if _, _, err := s.RotateRefresh(ctx, fmt.Sprintf("fam.%d", cur-1), "fam.new", time.Now(), time.Hour, storage.Retry{}); !errors.Is(err, storage.ErrReused) {
		t.Errorf("RotateRefresh of a token rotated before the kill = %v, want ErrReused", err)
	}
}

// killChild is the child of TestSQLiteKilled: it writes, reports each
// acknowledged rotation on stdout, and rotates until it is killed.
func killChild(t *testing.T, p string) {
	ctx := testCtx(t)
	s := openSQLite(t, p, Options{})
	now := time.Now()
	must := func(err error) {
		if err != nil {
			fmt.Println("error", err)
			os.Exit(2)
		}
	}
	f := storage.RefreshFamily{ID: "fam", CreatedAt: now, LastUsed: now, IdleExpiry: now.Add(time.Hour), AbsoluteExpiry: now.Add(time.Hour),
		Grant: storage.Grant{ClientID: "app", Subject: "ada"}}
	must(s.CreateRefresh(ctx, f, "fam.0"))
	must(s.RevokeFamily(ctx, "revoked", now.Add(time.Hour)))
	for _, id := range []string{"session-deleted", "session-kept"} {
		must(s.CreateSession(ctx, storage.Session{ID: id, Subject: "ada", Expiry: now.Add(time.Hour)}))
	}
	must(s.DeleteSession(ctx, "session-deleted"))
	_, err := s.MarkSeen(ctx, "revoked_at", "jti-1", now.Add(time.Hour))
	must(err)
	_, _, err = s.CreateLink(ctx, storage.Link{Key: "email:ada@example.com", Subject: "sub-ada"})
	must(err)
	_, err = s.PutKeys(ctx, []byte("keys"), 0)
	must(err)
	for k := 1; ; k++ {
		_, _, err := s.RotateRefresh(ctx, fmt.Sprintf("fam.%d", k-1), fmt.Sprintf("fam.%d", k), time.Now(), time.Hour, storage.Retry{})
		must(err)
		fmt.Printf("rotated %d\n", k)
	}
}
