package sqlstore

import (
	"path/filepath"
	"testing"

	redisstore "github.com/fedbroker/fedbroker/broker/storage/redis"
	"github.com/fedbroker/fedbroker/broker/storage/redis/redistest"
	"github.com/fedbroker/fedbroker/broker/storage/sqlstore/pgtest"
	"github.com/fedbroker/fedbroker/broker/storage/storagetest"
)

// TestTransfer copies state between the stores `fedbroker storage copy`
// moves between: Redis to SQLite, SQLite to PostgreSQL, PostgreSQL to
// SQLite.
func TestTransfer(t *testing.T) {
	sqlite := func(t *testing.T) *Store {
		s, err := OpenSQLite(testCtx(t), filepath.Join(t.TempDir(), "f.db"), Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	postgres := func(t *testing.T) *Store {
		s, err := OpenPostgres(testCtx(t), pgtest.Start(t), Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	t.Run("redis to sqlite", func(t *testing.T) {
		src, err := redisstore.Open(testCtx(t), redistest.StartServer(t).URL(), redisstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer src.Close()
		storagetest.RunTransfer(t, src, sqlite(t))
	})
	t.Run("sqlite to postgres", func(t *testing.T) { storagetest.RunTransfer(t, sqlite(t), postgres(t)) })
	t.Run("postgres to sqlite", func(t *testing.T) { storagetest.RunTransfer(t, postgres(t), sqlite(t)) })
}
