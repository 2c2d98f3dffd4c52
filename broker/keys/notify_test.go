package keys

import (
	"context"
	"testing"
	"time"

	"github.com/fedbroker/fedbroker/broker/storage"
	"github.com/fedbroker/fedbroker/broker/storage/redis/redistest"
)

// checkRotationReachesReplica rotates on a and requires b, whose sync
// timer is an hour, to sign with the new key within a second.
func checkRotationReachesReplica(t *testing.T, a, b *Manager) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { b.runSync(ctx, time.Hour); close(done) }()
	defer func() {
		cancel()
		<-done
	}()
	// Let b subscribe before the rotation is published.
	deadline := time.Now().Add(5 * time.Second)
	for !b.subscribed() {
		if time.Now().After(deadline) {
			t.Fatal("replica did not subscribe to key notifications")
		}
		time.Sleep(5 * time.Millisecond)
	}
	for round := range 3 {
		if err := a.RotateNow(context.Background()); err != nil {
			t.Fatal(err)
		}
		want := activeKid(t, a, "ES256")
		start := time.Now()
		for activeKid(t, b, "ES256") != want {
			if time.Since(start) > time.Second {
				t.Fatalf("round %d: replica still signs with %s a second after the rotation to %s", round, activeKid(t, b, "ES256"), want)
			}
			time.Sleep(5 * time.Millisecond)
		}
		if ja, jb := jwksBody(a), jwksBody(b); ja != jb {
			t.Fatalf("round %d: JWKS differ after the notification", round)
		}
	}
}

func jwksBody(m *Manager) string {
	b, _ := m.JWKS()
	return string(b)
}

func TestRotationNotifiedMemory(t *testing.T) {
	clk := newClock()
	store := newStore(clk)
	var _ storage.KeyNotifier = store
	opts := Options{RotationPeriod: 24 * time.Hour}
	checkRotationReachesReplica(t, newManager(t, store, clk, opts), newManager(t, store, clk, opts))
}

func TestRotationNotifiedRedis(t *testing.T) {
	srv := redistest.StartServer(t)
	clk := newClock()
	opts := Options{RotationPeriod: 24 * time.Hour}
	a := newManager(t, openRedis(t, srv.URL()), clk, opts)
	b := newManager(t, openRedis(t, srv.URL()), clk, opts)
	checkRotationReachesReplica(t, a, b)
}
