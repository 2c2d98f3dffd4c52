package storage

import (
	"context"
	"sync"
)

// Broadcast is a set of in-process subscribers, each woken (without
// blocking, coalesced: its channel buffers one value) by every Notify. The
// backends whose key-set changes stay within one process (memory, SQLite)
// build their KeyNotifier on it. The zero value is ready to use.
type Broadcast struct {
	mu     sync.Mutex
	closed bool
	subs   map[chan struct{}]struct{}
}

// Subscribe adds a subscriber whose channel is closed when ctx is done or
// at Close; false once the Broadcast is closed.
func (b *Broadcast) Subscribe(ctx context.Context) (<-chan struct{}, bool) {
	ch := make(chan struct{}, 1)
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, false
	}
	if b.subs == nil {
		b.subs = map[chan struct{}]struct{}{}
	}
	b.subs[ch] = struct{}{}
	b.mu.Unlock()
	context.AfterFunc(ctx, func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		if _, ok := b.subs[ch]; ok {
			delete(b.subs, ch)
			close(ch)
		}
	})
	return ch, true
}

// Notify wakes every subscriber without blocking.
func (b *Broadcast) Notify() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for ch := range b.subs {
		select {
		case ch <- struct{}{}:
		default: // one pending value already stands for this write
		}
	}
}

// Close closes every subscriber's channel; later subscriptions fail.
func (b *Broadcast) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for ch := range b.subs {
		close(ch)
	}
	b.subs = nil
}
