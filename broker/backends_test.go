package broker

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/fedbroker/fedbroker/broker/storage"
	"github.com/fedbroker/fedbroker/broker/storage/memory"
	redisstore "github.com/fedbroker/fedbroker/broker/storage/redis"
	"github.com/fedbroker/fedbroker/broker/storage/redis/redistest"
	"github.com/fedbroker/fedbroker/broker/storage/sqlstore"
	"github.com/fedbroker/fedbroker/broker/storage/sqlstore/pgtest"
)

func newMemoryStore(clk *clock) storage.Storage {
	return memory.New(memory.WithClock(clk.Now))
}

func newJSONLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, nil))
}

// backends are the storage backends the broker's flow tests run on. Redis
// expires records by its own clock, so tests that move the test clock use
// the memory backend.
func backends() map[string]func(testing.TB, *clock) storage.Storage {
	return map[string]func(testing.TB, *clock) storage.Storage{
		"memory": func(_ testing.TB, clk *clock) storage.Storage { return newMemoryStore(clk) },
		"redis": func(t testing.TB, _ *clock) storage.Storage {
			url := redistest.Start(t)
			st, err := redisstore.Open(context.Background(), url, redisstore.Options{KeyPrefix: "fbtest"})
			if err != nil {
				t.Fatalf("redis.Open: %v", err)
			}
			t.Cleanup(func() { _ = st.Close() })
			return st
		},
		"sqlite": func(t testing.TB, _ *clock) storage.Storage {
			st, err := sqlstore.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "fedbroker.db"), sqlstore.Options{})
			if err != nil {
				t.Fatalf("sqlstore.OpenSQLite: %v", err)
			}
			t.Cleanup(func() { _ = st.Close() })
			return st
		},
		"postgres": func(t testing.TB, _ *clock) storage.Storage {
			st, err := sqlstore.OpenPostgres(context.Background(), pgtest.Start(t), sqlstore.Options{})
			if err != nil {
				t.Fatalf("sqlstore.OpenPostgres: %v", err)
			}
			t.Cleanup(func() { _ = st.Close() })
			return st
		},
	}
}
