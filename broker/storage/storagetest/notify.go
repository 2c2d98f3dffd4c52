package storagetest

import (
	"context"
	"testing"
	"time"

	"github.com/fedbroker/fedbroker/broker/storage"
)

// testKeysNotify checks storage.KeyNotifier, for stores that implement it:
// every subscriber hears of a PutKeys within a second, and a subscription's
// channel is closed when its context is done.
func testKeysNotify(t *testing.T, s storage.Storage) {
	n, ok := s.(storage.KeyNotifier)
	if !ok {
		t.Skip("the store does not implement storage.KeyNotifier")
	}
	c1, cancel1 := context.WithCancel(ctx(t))
	defer cancel1()
	c2, cancel2 := context.WithCancel(ctx(t))
	defer cancel2()
	sub1, err := n.SubscribeKeys(c1)
	wantErr(t, "SubscribeKeys", err, nil)
	sub2, err := n.SubscribeKeys(c2)
	wantErr(t, "SubscribeKeys second", err, nil)

	v := int64(0)
	for i := range 3 {
		v, err = s.PutKeys(ctx(t), []byte("set"), v)
		wantErr(t, "PutKeys", err, nil)
		for j, sub := range []<-chan struct{}{sub1, sub2} {
			select {
			case _, ok := <-sub:
				if !ok {
					t.Fatalf("write %d: subscriber %d: channel closed", i, j)
				}
			case <-time.After(time.Second):
				t.Fatalf("write %d: subscriber %d not notified within a second", i, j)
			}
		}
	}

	cancel1()
	deadline := time.After(5 * time.Second)
	for open := true; open; {
		select {
		case _, open = <-sub1:
		case <-deadline:
			t.Fatal("channel not closed after its context was cancelled")
		}
	}
	_, err = s.PutKeys(ctx(t), []byte("set"), v)
	wantErr(t, "PutKeys after one subscriber left", err, nil)
	select {
	case <-sub2:
	case <-time.After(time.Second):
		t.Fatal("remaining subscriber not notified within a second")
	}
}
