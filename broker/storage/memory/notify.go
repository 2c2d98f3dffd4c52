package memory

import (
	"context"
	"fmt"
	"sync"

	"github.com/fedbroker/fedbroker/broker/storage"
)

var _ storage.KeyNotifier = (*Store)(nil)

// keySubs is the set of key-set subscribers of one Store, broadcast to in
// process after every successful PutKeys.
type keySubs struct {
	mu     sync.Mutex
	closed bool
	subs   map[chan struct{}]struct{}
}

// SubscribeKeys returns a channel that receives a value after every
// successful PutKeys on this Store (coalesced: its buffer holds one). It is
// closed when ctx is done or the Store is closed.
func (s *Store) SubscribeKeys(ctx context.Context) (<-chan struct{}, error) {
	n := &s.keyNotes
	ch := make(chan struct{}, 1)
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil, fmt.Errorf("memory: subscribe keys: store closed: %w", storage.ErrUnavailable)
	}
	if n.subs == nil {
		n.subs = map[chan struct{}]struct{}{}
	}
	n.subs[ch] = struct{}{}
	n.mu.Unlock()
	context.AfterFunc(ctx, func() {
		n.mu.Lock()
		defer n.mu.Unlock()
		if _, ok := n.subs[ch]; ok {
			delete(n.subs, ch)
			close(ch)
		}
	})
	return ch, nil
}

// notify wakes every subscriber without blocking.
func (n *keySubs) notify() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for ch := range n.subs {
		select {
		case ch <- struct{}{}:
		default: // one pending value already stands for this write
		}
	}
}

// close closes every subscriber's channel; later subscriptions fail.
func (n *keySubs) close() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.closed = true
	for ch := range n.subs {
		close(ch)
	}
	n.subs = nil
}
