package pgtest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

// userTables counts the tables a test created in the database.
func userTables(t *testing.T, c *pgx.Conn) int {
	t.Helper()
	var n int
	err := c.QueryRow(ctx(t), `SELECT count(*) FROM information_schema.tables WHERE table_schema NOT IN ('pg_catalog', 'information_schema')`).Scan(&n)
	if err != nil {
		t.Fatalf("count tables: %v", err)
	}
	return n
}

func setting(t *testing.T, c *pgx.Conn, name string) string {
	t.Helper()
	var v string
	if err := c.QueryRow(ctx(t), "SELECT current_setting($1)", name).Scan(&v); err != nil {
		t.Fatalf("current_setting(%s): %v", name, err)
	}
	return v
}

// TestStopRestart: a committed row survives a crash (Stop) and Restart on
// the same port; while stopped, connections fail.
func TestStopRestart(t *testing.T) {
	srv := StartServer(t)
	if !strings.Contains(srv.URL(), srv.Addr()) || !strings.HasPrefix(srv.Addr(), "127.0.0.1:") {
		t.Errorf("URL %s, Addr %s: want a loopback address in the URL", srv.URL(), srv.Addr())
	}
	c := connect(t, srv.URL())
	if userTables(t, c) != 0 {
		t.Fatalf("a fresh server's test database has tables")
	}
	if v := setting(t, c, "fsync"); v != "off" {
		t.Errorf("fsync = %s, want off by default", v)
	}
	if v := setting(t, c, "listen_addresses"); v != "127.0.0.1" {
		t.Errorf("listen_addresses = %s, want 127.0.0.1", v)
	}
	if os.Geteuid() == 0 {
		// initdb and postgres refuse root: they run as another user.
		fi, err := os.Stat(setting(t, c, "data_directory"))
		if err != nil {
			t.Fatal(err)
		}
		if uid := fi.Sys().(*syscall.Stat_t).Uid; uid == 0 {
			t.Errorf("the data directory is owned by root, want the unprivileged user postgres runs as")
		}
	}
	if _, err := c.Exec(ctx(t), `CREATE TABLE kv (k text PRIMARY KEY, v text); INSERT INTO kv VALUES ('k', 'v')`); err != nil {
		t.Fatalf("create and insert: %v", err)
	}

	srv.Stop()
	if err := c.Ping(ctx(t)); err == nil {
		t.Errorf("Ping on a connection opened before Stop = nil, want an error")
	}
	if err := ping(srv.URL()); err == nil {
		t.Errorf("a new connection after Stop succeeded, want an error")
	}
	srv.Stop() // idempotent

	srv.Restart()
	c2 := connect(t, srv.URL())
	var v string
	if err := c2.QueryRow(ctx(t), `SELECT v FROM kv WHERE k = 'k'`).Scan(&v); err != nil || v != "v" {
		t.Fatalf("after Restart: SELECT v = %q, %v; want the committed row", v, err)
	}
	// A second crash and restart, now with a write just before it.
	if _, err := c2.Exec(ctx(t), `INSERT INTO kv VALUES ('k2', 'v2')`); err != nil {
		t.Fatal(err)
	}
	srv.Restart()
	c3 := connect(t, srv.URL())
	var n int
	if err := c3.QueryRow(ctx(t), `SELECT count(*) FROM kv`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("after a second Restart: %d rows, %v; want 2", n, err)
	}
}

// TestStartIsEmpty: two Starts give two distinct, empty databases.
func TestStartIsEmpty(t *testing.T) {
	t.Setenv("POSTGRES_URL", "")
	checkTwoEmpty(t)
}

func checkTwoEmpty(t *testing.T) (url1, url2 string) {
	t.Helper()
	url1, url2 = Start(t), Start(t)
	if url1 == url2 {
		t.Fatalf("Start returned %s twice", url1)
	}
	c1, c2 := connect(t, url1), connect(t, url2)
	if n1, n2 := userTables(t, c1), userTables(t, c2); n1 != 0 || n2 != 0 {
		t.Fatalf("fresh databases have %d and %d tables, want none", n1, n2)
	}
	if _, err := c1.Exec(ctx(t), `CREATE TABLE only_here (x int)`); err != nil {
		t.Fatal(err)
	}
	if n := userTables(t, c2); n != 0 {
		t.Errorf("a table created in the first database shows in the second")
	}
	return url1, url2
}

// TestPostgresURL: with $POSTGRES_URL, each Start creates its own database
// on that server, and drops it when the test ends.
func TestPostgresURL(t *testing.T) {
	srv := StartServer(t)
	t.Setenv("POSTGRES_URL", srv.URL())
	var names []string
	t.Run("start", func(t *testing.T) {
		u1, u2 := checkTwoEmpty(t)
		for _, u := range []string{u1, u2} {
			if !strings.HasPrefix(u, "postgres://postgres@"+srv.Addr()+"/pgtest_") || !strings.HasSuffix(u, "?sslmode=disable") {
				t.Errorf("Start = %s, want a new database on %s with the query kept", u, srv.Addr())
			}
			var name string
			if err := connect(t, u).QueryRow(ctx(t), "SELECT current_database()").Scan(&name); err != nil {
				t.Fatal(err)
			}
			names = append(names, name)
		}
		// A connection still open at cleanup does not stop the drop.
	})
	c := connect(t, srv.URL())
	var n int
	if err := c.QueryRow(ctx(t), "SELECT count(*) FROM pg_database WHERE datname = ANY($1)", names).Scan(&n); err != nil || n != 0 {
		t.Errorf("after the test: %d of the databases %v remain (%v), want them dropped", n, names, err)
	}
}

// TestExtraArgs: StartServer's arguments override the defaults.
func TestExtraArgs(t *testing.T) {
	srv := StartServer(t, "-c", "fsync=on", "-c", "application_name=pgtest-extra")
	c := connect(t, srv.URL())
	if v := setting(t, c, "fsync"); v != "on" {
		t.Errorf("fsync = %s, want on", v)
	}
}

// TestBinary finds the programs from one installation.
func TestBinary(t *testing.T) {
	for _, name := range []string{"initdb", "pg_ctl", "postgres"} {
		p := Binary(t, name)
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm()&0o111 == 0 {
			t.Errorf("Binary(%s) = %s (%v), want an executable", name, p, err)
		}
	}
	// Without PATH, the Debian directory is searched.
	t.Setenv("PATH", t.TempDir())
	if dirs, _ := filepath.Glob(libDirs); len(dirs) > 0 {
		if p := Binary(t, "initdb"); !strings.HasPrefix(p, "/usr/lib/postgresql/") {
			t.Errorf("Binary(initdb) without PATH = %s, want it from %s", p, libDirs)
		}
	}
}

// TestMissingServer runs this test binary again without PostgreSQL in PATH
// or /usr/lib/postgresql: the helper test must skip, or fail under CI=true.
func TestMissingServer(t *testing.T) {
	if os.Getenv("PGTEST_CHILD") == "1" {
		libDirs = filepath.Join(t.TempDir(), "*", "bin")
		Start(t)
		t.Fatal("Start returned without PostgreSQL")
	}
	for _, tc := range []struct {
		ci       string
		wantFail bool
		wantOut  string
	}{
		{"", false, "--- SKIP: TestMissingServer"},
		{"true", true, "--- FAIL: TestMissingServer"},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestMissingServer$", "-test.v")
		cmd.Env = append(os.Environ(), "PGTEST_CHILD=1", "PATH="+t.TempDir(), "POSTGRES_URL=", "CI="+tc.ci)
		out, err := cmd.CombinedOutput()
		if failed := err != nil; failed != tc.wantFail {
			t.Errorf("CI=%q: child failed = %v (%v), want %v; output:\n%s", tc.ci, failed, err, tc.wantFail, out)
		}
		for _, want := range []string{tc.wantOut, "postgres not found", "apt-get install postgresql"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("CI=%q: child output lacks %q:\n%s", tc.ci, want, out)
			}
		}
	}
}
