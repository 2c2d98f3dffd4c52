package sqlstore

import (
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fedbroker/fedbroker/broker/storage"
	"github.com/fedbroker/fedbroker/broker/storage/sqlstore/pgtest"
	"github.com/fedbroker/fedbroker/broker/storage/storagetest"
)

// benchBackends opens stores for benchmarks: SQLite in a temporary
// directory, PostgreSQL on $POSTGRES_URL or on a private server with
// fsync on (pgtest's default turns it off), so that commits cost what
// they cost in production.
func benchBackends(b *testing.B) map[string]func(b *testing.B) *Store {
	server := os.Getenv("POSTGRES_URL")
	if server == "" {
		server = pgtest.StartServer(b, "-c", "fsync=on").URL()
	}
	return map[string]func(b *testing.B) *Store{
		"sqlite": func(b *testing.B) *Store { return openSQLite(b, sqlitePath(b), Options{}) },
		"postgres": func(b *testing.B) *Store {
			b.Setenv("POSTGRES_URL", server) // a fresh database on it
			return openPostgres(b, pgtest.Start(b), Options{})
		},
	}
}

func BenchmarkStore(b *testing.B) {
	backends := benchBackends(b)
	for _, name := range []string{"sqlite", "postgres"} {
		open := backends[name]
		b.Run(name, func(b *testing.B) {
			storagetest.Bench(b, func(b *testing.B) storage.Storage { return open(b) })
		})
	}
}

// BenchmarkRotateParallel rotates many families at once (one per
// goroutine, as many clients refreshing): every rotation ticks the one
// epoch row in its transaction, so this measures what that costs.
func BenchmarkRotateParallel(b *testing.B) {
	backends := benchBackends(b)
	for _, name := range []string{"sqlite", "postgres"} {
		open := backends[name]
		b.Run(name, func(b *testing.B) {
			s := open(b)
			defer s.Close()
			ctx := testCtx(b)
			var next atomic.Int64
			b.SetParallelism(4)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				id := fmt.Sprint("fam", next.Add(1))
				now := time.Now()
				f := storage.RefreshFamily{ID: id, CreatedAt: now, LastUsed: now, IdleExpiry: now.Add(time.Hour), AbsoluteExpiry: now.Add(time.Hour),
					Grant: storage.Grant{ClientID: "app", Subject: "bench"}}
				if err := s.CreateRefresh(ctx, f, id+".0"); err != nil {
					b.Error(err)
					return
				}
				for i := 0; pb.Next(); i++ {
					if _, _, err := s.RotateRefresh(ctx, fmt.Sprint(id, ".", i), fmt.Sprint(id, ".", i+1), time.Now(), time.Hour, storage.Retry{}); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
