package memory

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/fedbroker/fedbroker/broker/storage"
)

// TestReplicasBounded: expired records leave memory at the next put, and
// a record is a copy of what the caller passed and got.
func TestReplicasBounded(t *testing.T) {
	clock := &fakeClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := New(WithClock(clock.now))
	ctx := context.Background()
	act := []byte("counters")
	if err := s.PutReplica(ctx, storage.Replica{ID: "old", Activity: act}, clock.t.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	act[0] = 'X'
	got, err := s.ListReplicas(ctx)
	if err != nil || len(got) != 1 || string(got[0].Activity) != "counters" {
		t.Fatalf("ListReplicas() = %+v, %v; want old with its activity as put", got, err)
	}
	got[0].Activity[0] = 'Y'
	if again, _ := s.ListReplicas(ctx); string(again[0].Activity) != "counters" {
		t.Fatalf("ListReplicas() after the caller changed a listed record = %q, want counters", again[0].Activity)
	}
	clock.t = clock.t.Add(2 * time.Minute)
	if err := s.PutReplica(ctx, storage.Replica{ID: "new"}, clock.t.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	n := len(s.replicas)
	s.mu.Unlock()
	if n != 1 {
		t.Errorf("records held after the old one expired = %d, want 1", n)
	}
}

func TestReplicasClosed(t *testing.T) {
	s := New()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.PutReplica(ctx, storage.Replica{ID: "r"}, time.Now().Add(time.Hour)); !errors.Is(err, storage.ErrUnavailable) {
		t.Errorf("PutReplica after Close: error = %v, want ErrUnavailable", err)
	}
	if _, err := s.ListReplicas(ctx); !errors.Is(err, storage.ErrUnavailable) {
		t.Errorf("ListReplicas after Close: error = %v, want ErrUnavailable", err)
	}
}
