package authflow

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/runtime/runtimetest"
	"github.com/fedbroker/fedbroker/broker/storage/memory"
)

// TestWrongCodesAcrossReplicas: two replicas on one store share each
// address's budget of wrong codes; it refills one cell per Every; many
// charges at once take no more cells than the budget.
func TestWrongCodesAcrossReplicas(t *testing.T) {
	clk := runtimetest.NewClock(time.Unix(1_700_000_000, 0))
	store := memory.New(memory.WithClock(clk.Now))
	limit := config.RateLimit{Burst: 3, Every: time.Minute}
	a, b := newWrongCodes(store, clk.Now, limit), newWrongCodes(store, clk.Now, limit)
	ctx := context.Background()
	addr, other := hashLimitKey("device-addr", "192.0.2.1"), hashLimitKey("device-addr", "192.0.2.2")
	allowed := func(w *wrongCodes, k limitKey) bool {
		t.Helper()
		ok, err := w.allowed(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	charge := func(w *wrongCodes, k limitKey) {
		t.Helper()
		if err := w.charge(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	for i, w := range []*wrongCodes{a, b, a} {
		if !allowed(w, addr) {
			t.Fatalf("wrong code %d refused", i)
		}
		charge(w, addr)
	}
	if allowed(a, addr) || allowed(b, addr) {
		t.Fatal("a fourth wrong code allowed on a replica")
	}
	if !allowed(b, other) {
		t.Fatal("another address shares the budget")
	}
	clk.Advance(time.Minute)
	if !allowed(b, addr) {
		t.Fatal("no wrong code a minute later")
	}
	charge(b, addr)
	if allowed(a, addr) {
		t.Fatal("two wrong codes in one refill")
	}

	// 20 charges at once from two replicas take the 3 cells of a fresh
	// address and no more.
	fresh := hashLimitKey("device-addr", "198.51.100.7")
	var wg sync.WaitGroup
	var errs atomic.Int64
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := []*wrongCodes{a, b}[i%2].charge(ctx, fresh); err != nil {
				errs.Add(1)
			}
		}()
	}
	wg.Wait()
	if errs.Load() != 0 {
		t.Fatalf("%d charges failed", errs.Load())
	}
	taken := 0
	slot := clk.Now().UnixNano() / int64(time.Minute)
	for j := slot; j < slot+10; j++ {
		if free, err := store.MarkSeen(ctx, wrongCodeNamespace, cellID(fresh, j), time.Time{}); err != nil {
			t.Fatal(err)
		} else if !free {
			taken++
		}
	}
	if taken != 3 {
		t.Fatalf("%d cells taken by 20 charges at once, want 3", taken)
	}
	if allowed(newWrongCodes(store, clk.Now, limit), fresh) {
		t.Fatal("a new replica allows a wrong code of a spent address")
	}
}
