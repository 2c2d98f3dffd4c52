package redis

import (
	"context"
	"testing"

	"github.com/fedbroker/fedbroker/broker/storage"
	"github.com/fedbroker/fedbroker/broker/storage/redis/redistest"
	"github.com/fedbroker/fedbroker/broker/storage/storagetest"
)

// BenchmarkGrants measures RedeemCode and RefreshGrant (one script and the
// epoch tick in one pipeline each) beside a bare PING: the floor of one
// round trip to this redis-server.
func BenchmarkGrants(b *testing.B) {
	url := redistest.Start(b)
	b.Run("Ping", func(b *testing.B) {
		s := open(b, url, Options{KeyPrefix: "bench/ping"})
		defer s.Close()
		ctx := context.Background()
		for i := 0; i < b.N; i++ {
			if err := s.c.Ping(ctx).Err(); err != nil {
				b.Fatal(err)
			}
		}
	})
	storagetest.BenchGrants(b, func(b *testing.B) storage.Storage {
		return open(b, url, Options{KeyPrefix: "bench/" + b.Name()})
	})
}
