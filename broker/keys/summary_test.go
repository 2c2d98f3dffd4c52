package keys

import (
	"context"
	"testing"
	"time"

	"github.com/fedbroker/fedbroker/broker/storage/memory"
)

// TestSummary: the overview of the key set names the active and next key
// of each algorithm, and after a rotation the old active key as retired,
// with its retirement time and the next rotation's.
func TestSummary(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	clock := func() time.Time { return now }
	m, err := New(context.Background(), memory.New(), Options{Algorithm: "ES256", RotationPeriod: 24 * time.Hour, MaxTokenLifetime: time.Hour, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	s := m.Summary()
	if len(s) != 1 || s[0].Alg != "ES256" || len(s[0].Keys) != 2 || s[0].Keys[0].Role != "active" || s[0].Keys[1].Role != "next" {
		t.Fatalf("Summary() = %+v, want ES256 with an active and a next key", s)
	}
	if !s[0].NextRotation.Equal(s[0].RotatedAt.Add(24 * time.Hour)) {
		t.Errorf("next rotation %v, want rotated at %v + 24h", s[0].NextRotation, s[0].RotatedAt)
	}
	active, next := s[0].Keys[0].KID, s[0].Keys[1].KID
	now = now.Add(25 * time.Hour)
	if err := m.RotateNow(context.Background()); err != nil {
		t.Fatal(err)
	}
	s = m.Summary()
	if len(s[0].Keys) != 3 {
		t.Fatalf("after a rotation: %+v, want active, next and retired", s[0].Keys)
	}
	if s[0].Keys[0].KID != next || s[0].Keys[2].KID != active || s[0].Keys[2].Role != "retired" || s[0].Keys[2].RetireAt.IsZero() {
		t.Errorf("after a rotation: %+v, want %s active and %s retired with a retirement time", s[0].Keys, next, active)
	}
	if m.RotationPeriod() != 24*time.Hour {
		t.Errorf("RotationPeriod() = %v", m.RotationPeriod())
	}
}
