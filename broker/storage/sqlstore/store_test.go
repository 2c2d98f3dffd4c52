package sqlstore

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fedbroker/fedbroker/broker/storage"
	"github.com/fedbroker/fedbroker/broker/storage/sqlstore/pgtest"
	"github.com/fedbroker/fedbroker/broker/storage/storagetest"
)

func testCtx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// sqlitePath returns the path of a new database file in a temporary
// directory.
func sqlitePath(t testing.TB) string { return filepath.Join(t.TempDir(), "fedbroker.db") }

func openSQLite(t testing.TB, path string, opts Options) *Store {
	t.Helper()
	s, err := OpenSQLite(testCtx(t), path, opts)
	if err != nil {
		t.Fatalf("OpenSQLite(%s) = %v", path, err)
	}
	return s
}

func openPostgres(t testing.TB, url string, opts Options) *Store {
	t.Helper()
	s, err := OpenPostgres(testCtx(t), url, opts)
	if err != nil {
		t.Fatalf("OpenPostgres = %v", err)
	}
	return s
}

// sharePostgres makes every pgtest.Start of t (and its subtests) create a
// database on one private server, instead of starting a server each, unless
// $POSTGRES_URL already names one.
func sharePostgres(t *testing.T) {
	t.Helper()
	if os.Getenv("POSTGRES_URL") == "" {
		srv := pgtest.StartServer(t)
		t.Setenv("POSTGRES_URL", srv.URL())
	}
}

// backend opens fresh, empty stores of one dialect; a second store on the
// same database comes from again.
type backend struct {
	name string
	// fresh returns a new, empty database and opens a store on it.
	fresh func(t testing.TB, opts Options) *Store
	// again opens another store on the database of s.
	again func(t testing.TB, s *Store, opts Options) *Store
}

// where remembers the path or URL each store was opened on.
var where sync.Map // *Store → string

func backends(t *testing.T) []backend {
	return []backend{
		{
			name: "sqlite",
			fresh: func(t testing.TB, opts Options) *Store {
				p := sqlitePath(t)
				s := openSQLite(t, p, opts)
				where.Store(s, p)
				return s
			},
			again: func(t testing.TB, s *Store, opts Options) *Store {
				p, _ := where.Load(s)
				o := openSQLite(t, p.(string), opts)
				where.Store(o, p)
				return o
			},
		},
		{
			name: "postgres",
			fresh: func(t testing.TB, opts Options) *Store {
				u := pgtest.Start(t)
				s := openPostgres(t, u, opts)
				where.Store(s, u)
				return s
			},
			again: func(t testing.TB, s *Store, opts Options) *Store {
				u, _ := where.Load(s)
				o := openPostgres(t, u.(string), opts)
				where.Store(o, u)
				return o
			},
		},
	}
}

// eachBackend runs fn for each dialect as a subtest.
func eachBackend(t *testing.T, fn func(t *testing.T, b backend)) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			if b.name == "postgres" {
				sharePostgres(t)
			}
			fn(t, b)
		})
	}
}

func TestConformance(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		storagetest.Run(t, func(t *testing.T) storage.Storage { return b.fresh(t, Options{}) })
	})
}

func TestClosedIsUnavailable(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		s := b.fresh(t, Options{})
		if err := s.Close(); err != nil {
			t.Fatalf("Close() = %v", err)
		}
		storagetest.RunUnavailable(t, s)
		if _, err := s.SubscribeKeys(testCtx(t)); err == nil {
			t.Errorf("SubscribeKeys after Close = nil error")
		}
		if err := s.Close(); err != nil {
			t.Errorf("second Close() = %v", err)
		}
	})
}

func TestKind(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		s := b.fresh(t, Options{})
		defer s.Close()
		if s.Kind() != b.name {
			t.Errorf("Kind() = %q, want %q", s.Kind(), b.name)
		}
	})
}

// dump renders every row of every table.
func dump(t *testing.T, s *Store) string {
	t.Helper()
	var b strings.Builder
	for _, table := range []string{"auth_requests", "codes", "refresh_families", "sessions", "keyset", "leases", "seen", "links", "epoch"} {
		rows, err := s.r.QueryContext(testCtx(t), "SELECT * FROM "+table)
		if err != nil {
			t.Fatalf("dump %s: %v", table, err)
		}
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatalf("dump %s: %v", table, err)
			}
			fmt.Fprintf(&b, "%s:", table)
			for _, v := range vals {
				if bs, ok := v.([]byte); ok {
					v = string(bs)
				}
				fmt.Fprintf(&b, " %v", v)
			}
			b.WriteByte('\n')
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		rows.Close()
	}
	return b.String()
}

func TestNoClearSecrets(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		s := b.fresh(t, Options{})
		defer s.Close()
		secrets := storagetest.WriteSecrets(t, s)
		d := dump(t, s)
		if !strings.Contains(d, storage.Hash(secrets[0])) {
			t.Fatalf("dump does not contain the code's hash; the inspection sees nothing:\n%s", d)
		}
		for _, sec := range secrets {
			if strings.Contains(d, sec) {
				t.Errorf("stored form contains the clear secret %q", sec)
			}
		}
	})
}

// TestCorruptRow: a row that does not decode is ErrUnavailable (never
// ErrNotFound) and is logged.
func TestCorruptRow(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		var logs bytes.Buffer
		s := b.fresh(t, Options{Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
		defer s.Close()
		ctx := testCtx(t)
		if err := s.CreateSession(ctx, storage.Session{ID: "sid", Subject: "alice", Expiry: time.Now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.w.ExecContext(ctx, `UPDATE sessions SET data = $1`, []byte("{not json")); err != nil {
			t.Fatal(err)
		}
		_, err := s.GetSession(ctx, "sid")
		if !isUnavailable(err) || isNotFound(err) {
			t.Errorf("GetSession of a corrupt row = %v, want ErrUnavailable", err)
		}
		if !strings.Contains(logs.String(), "corrupt row") {
			t.Errorf("no log line about the corrupt row: %s", logs.String())
		}
	})
}

func isUnavailable(err error) bool { return err != nil && errors.Is(err, storage.ErrUnavailable) }

// exec runs a statement on s's writer, failing t on error.
func mustExec(t testing.TB, s *Store, query string, args ...any) sql.Result {
	t.Helper()
	res, err := s.w.ExecContext(testCtx(t), query, args...)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return res
}
