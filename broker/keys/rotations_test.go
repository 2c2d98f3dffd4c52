package keys

import (
	"context"
	"testing"
)

// TestRotationsCounted: a replica counts rotations it performs and ones it
// picks up from another replica.
func TestRotationsCounted(t *testing.T) {
	clk := newClock()
	store := newStore(clk)
	a := newManager(t, store, clk, Options{})
	b := newManager(t, store, clk, Options{})
	if a.Rotations() != 0 || b.Rotations() != 0 {
		t.Fatalf("Rotations() before any rotation = %d, %d; want 0", a.Rotations(), b.Rotations())
	}
	ctx := context.Background()
	if err := a.RotateNow(ctx); err != nil {
		t.Fatalf("RotateNow() = %v", err)
	}
	if got := a.Rotations(); got != 1 {
		t.Errorf("a.Rotations() = %d, want 1", got)
	}
	if err := b.Sync(ctx); err != nil {
		t.Fatalf("Sync() = %v", err)
	}
	if got := b.Rotations(); got != 1 {
		t.Errorf("b.Rotations() after picking up a's rotation = %d, want 1", got)
	}
}
