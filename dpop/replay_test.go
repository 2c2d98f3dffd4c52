package dpop

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// clockedCache returns a cache whose clock the test moves.
func clockedCache(max int) (*ReplayCache, *time.Time) {
	now := testNow
	c := NewReplayCache(max)
	c.now = func() time.Time { return now }
	return c, &now
}

func TestReplayCacheSeen(t *testing.T) {
	c, now := clockedCache(10)
	until := now.Add(time.Minute)
	if c.Seen("a", until) {
		t.Fatal("Seen(a) first time = true")
	}
	if !c.Seen("a", until) {
		t.Fatal("Seen(a) replay = false")
	}
	if c.Seen("b", until) {
		t.Fatal("Seen(b) = true")
	}
	*now = now.Add(time.Minute)
	if c.Seen("a", now.Add(time.Minute)) {
		t.Error("Seen(a) after its record expired = true")
	}
	if !c.Seen("a", now.Add(time.Minute)) {
		t.Error("Seen(a) after it was recorded again = false")
	}
	if c.Len() != 1 {
		t.Errorf("Len() = %d, want 1 (b expired)", c.Len())
	}
}

func TestReplayCacheExpiredUntil(t *testing.T) {
	c, now := clockedCache(10)
	if c.Seen("old", now.Add(-time.Second)) || c.Len() != 0 {
		t.Errorf("an already expired jti was recorded (Len %d)", c.Len())
	}
}

func TestReplayCacheBounded(t *testing.T) {
	c, now := clockedCache(3)
	c.Seen("late", now.Add(3*time.Minute))
	c.Seen("soon", now.Add(time.Minute))
	c.Seen("mid", now.Add(2*time.Minute))
	c.Seen("new", now.Add(4*time.Minute)) // evicts "soon"
	if c.Len() != 3 {
		t.Fatalf("Len() = %d, want 3", c.Len())
	}
	for _, jti := range []string{"late", "mid", "new"} {
		if !c.Seen(jti, now.Add(time.Hour)) {
			t.Errorf("Seen(%s) = false, want it kept", jti)
		}
	}
	if c.Seen("soon", now.Add(time.Minute)) {
		t.Error("Seen(soon) = true, want it evicted as the soonest to expire")
	}
	if c.Len() != 3 {
		t.Errorf("Len() = %d after more inserts, want 3", c.Len())
	}
	if z := NewReplayCache(0); z.Seen("x", time.Now().Add(time.Minute)) || !z.Seen("x", time.Now().Add(time.Minute)) {
		t.Error("NewReplayCache(0) does not hold one entry")
	}
}

func TestReplayCacheConcurrent(t *testing.T) {
	c := NewReplayCache(1000)
	until := time.Now().Add(time.Minute)
	var fresh atomic.Int64
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				// Every goroutine presents the same 100 jtis, and 100 of its own.
				jti := fmt.Sprint("shared-", i%100)
				if i >= 100 {
					jti = fmt.Sprint("own-", g, "-", i)
				}
				if !c.Seen(jti, until) {
					fresh.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if got := fresh.Load(); got != 100+8*100 {
		t.Errorf("fresh = %d, want %d: each jti accepted exactly once", got, 100+8*100)
	}
}
