package redisreplay

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fedbroker/fedbroker/broker/storage/redis/redistest"
)

func client(t *testing.T, url string) *redis.Client {
	t.Helper()
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opt)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func claim(t *testing.T, s *Store, key string, until time.Time) bool {
	t.Helper()
	fresh, err := s.Claim(t.Context(), key, until)
	if err != nil {
		t.Fatalf("Claim(%.20q) = %v", key, err)
	}
	return fresh
}

func TestClaim(t *testing.T) {
	c := client(t, redistest.Start(t))
	s := New(c, "svc:replay:")
	until := time.Now().Add(time.Minute)
	if !claim(t, s, "dpop iss jkt jti-1", until) {
		t.Fatal("first claim: not fresh")
	}
	if claim(t, s, "dpop iss jkt jti-1", until) {
		t.Fatal("second claim of the same key: fresh, want used")
	}
	if !claim(t, s, "dpop iss jkt jti-2", until) {
		t.Error("another key: not fresh")
	}
	// Another prefix is another service: it has seen nothing.
	if !claim(t, New(c, "other:"), "dpop iss jkt jti-1", until) {
		t.Error("same key under another prefix: not fresh")
	}

	// The key expires when the identifier stops passing anyway, rounded
	// up to the millisecond, never before.
	keys, err := c.Keys(t.Context(), "svc:replay:*").Result()
	if err != nil || len(keys) != 2 {
		t.Fatalf("KEYS = %v, %v; want 2", keys, err)
	}
	for _, k := range keys {
		if len(k) != len("svc:replay:")+64 {
			t.Errorf("key %q: want the prefix and a hex SHA-256", k)
		}
		at, err := c.Do(t.Context(), "PEXPIRETIME", k).Int64()
		if err != nil {
			t.Fatal(err)
		}
		if want := until.Truncate(time.Millisecond).Add(time.Millisecond).UnixMilli(); at != want && at != until.UnixMilli() {
			t.Errorf("PEXPIRETIME %s = %d, want %d", k, at, want)
		}
	}
}

// TestClaimPastUntil: an identifier whose validity already ended is still
// recorded for a second, not dropped (SET with an expiry in the past
// would store nothing).
func TestClaimPastUntil(t *testing.T) {
	s := New(client(t, redistest.Start(t)), "p:")
	past := time.Now().Add(-time.Hour)
	if !claim(t, s, "k", past) {
		t.Fatal("first claim: not fresh")
	}
	if claim(t, s, "k", past) {
		t.Fatal("replay right after a claim with a past until: fresh, want used")
	}
}

// TestClaimLongKey: the key in Redis does not grow with the identifier.
func TestClaimLongKey(t *testing.T) {
	c := client(t, redistest.Start(t))
	s := New(c, "p:")
	long := strings.Repeat("j", 1<<20)
	if !claim(t, s, long, time.Now().Add(time.Minute)) || claim(t, s, long, time.Now().Add(time.Minute)) {
		t.Fatal("a 1 MiB identifier: want fresh, then used")
	}
	if claim(t, s, long[:len(long)-1]+"k", time.Now().Add(time.Minute)) == false {
		t.Error("an identifier differing in its last byte: used, want fresh")
	}
	keys, _ := c.Keys(t.Context(), "p:*").Result()
	for _, k := range keys {
		if len(k) != len("p:")+64 {
			t.Errorf("key of %d bytes", len(k))
		}
	}
}

// TestClaimConcurrent: of many replicas claiming one identifier at once,
// exactly one is told it is fresh.
func TestClaimConcurrent(t *testing.T) {
	url := redistest.Start(t)
	var fresh atomic.Int32
	var wg sync.WaitGroup
	for i := range 20 {
		s := New(client(t, url), "p:") // a replica each
		wg.Go(func() {
			ok, err := s.Claim(context.Background(), "one jti", time.Now().Add(time.Minute))
			if err != nil {
				t.Errorf("replica %d: %v", i, err)
			}
			if ok {
				fresh.Add(1)
			}
		})
	}
	wg.Wait()
	if n := fresh.Load(); n != 1 {
		t.Fatalf("%d replicas were told the identifier is fresh, want 1", n)
	}
}

// TestClaimRedisDown: without Redis, Claim errs and says nothing is
// fresh; once Redis is back it answers again.
func TestClaimRedisDown(t *testing.T) {
	srv := redistest.StartServer(t)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, DialTimeout: time.Second})
	t.Cleanup(func() { _ = c.Close() })
	s := New(c, "p:")
	srv.Stop()
	fresh, err := s.Claim(t.Context(), "k", time.Now().Add(time.Minute))
	if err == nil || fresh {
		t.Fatalf("Claim with Redis down = %v, %v; want an error and not fresh", fresh, err)
	}
	if !strings.Contains(err.Error(), "redisreplay") {
		t.Errorf("error %q does not name the store", err)
	}
	srv.Restart()
	if !claim(t, s, "k", time.Now().Add(time.Minute)) {
		t.Error("after Redis came back: the identifier refused during the outage is not fresh")
	}
}
