package keys

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/fedbroker/fedbroker/broker/storage"
	"github.com/fedbroker/fedbroker/broker/storage/redis"
	"github.com/fedbroker/fedbroker/broker/storage/redis/redistest"
)

func openRedis(t *testing.T, url string) *redis.Store {
	t.Helper()
	s, err := redis.Open(context.Background(), url, redis.Options{})
	if err != nil {
		t.Fatalf("redis.Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// TestRedisReplicas runs replicas with their own connections to one real
// Redis: they share keys across restarts, rotate once when racing, and keep
// serving when Redis goes away.
func TestRedisReplicas(t *testing.T) {
	srv := redistest.StartServer(t)
	ctx := context.Background()
	clk := newClock()
	opts := Options{RotationPeriod: time.Hour, Algorithms: []string{"EdDSA"}}

	var ms []*Manager
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			m := newManager(t, openRedis(t, srv.URL()), clk, opts)
			mu.Lock()
			ms = append(ms, m)
			mu.Unlock()
		})
	}
	wg.Wait()
	for _, alg := range []string{"ES256", "EdDSA"} {
		want := activeKid(t, ms[0], alg)
		for _, m := range ms[1:] {
			if got := activeKid(t, m, alg); got != want {
				t.Fatalf("%s: replicas started together sign with %s and %s", alg, got, want)
			}
		}
	}

	for round := range 5 {
		before := kids(t, ms[0], "ES256")
		clk.Advance(time.Hour)
		for _, m := range ms {
			wg.Go(func() {
				if err := m.Sync(ctx); err != nil {
					t.Errorf("Sync: %v", err)
				}
			})
		}
		wg.Wait()
		for _, m := range ms {
			if err := m.Sync(ctx); err != nil {
				t.Fatalf("Sync: %v", err)
			}
		}
		after := kids(t, ms[0], "ES256")
		n := 0
		for _, k := range after {
			if !slices.Contains(before, k) {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("round %d: kids %v after %v, want exactly one new key", round, after, before)
		}
		for _, m := range ms[1:] {
			if got := activeKid(t, m, "ES256"); got != after[0] {
				t.Fatalf("round %d: replica signs with %s, want %s", round, got, after[0])
			}
		}
	}

	restarted := newManager(t, openRedis(t, srv.URL()), clk, opts)
	if got, want := activeKid(t, restarted, "ES256"), activeKid(t, ms[0], "ES256"); got != want {
		t.Errorf("restarted replica signs with %s, want %s", got, want)
	}

	late := openRedis(t, srv.URL())
	srv.Stop()
	kid := activeKid(t, ms[0], "ES256")
	if err := ms[0].Sync(ctx); !errors.Is(err, storage.ErrUnavailable) {
		t.Errorf("Sync with Redis stopped = %v, want ErrUnavailable", err)
	}
	if got := activeKid(t, ms[0], "ES256"); got != kid {
		t.Errorf("signing kid with Redis stopped = %s, want %s", got, kid)
	}
	if _, err := New(ctx, late, Options{Now: clk.Now, KEK: make([]byte, 32)}); err == nil {
		t.Error("New with Redis stopped = nil error")
	}
}
