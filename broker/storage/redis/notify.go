package redis

import (
	"context"
	"strconv"

	goredis "github.com/redis/go-redis/v9"

	"github.com/fedbroker/fedbroker/broker/storage"
)

var _ storage.KeyNotifier = (*Store)(nil)

// keysChannel is the pub/sub channel announcing a new key set.
func (s *Store) keysChannel() string { return s.prefix + ":keys:changed" }

// publishKeys announces that version of the key set was stored. A failure
// is only logged: the write succeeded, and replicas still re-read on their
// timer.
func (s *Store) publishKeys(ctx context.Context, version int64) {
	err := s.c.Publish(context.WithoutCancel(ctx), s.keysChannel(), strconv.FormatInt(version, 10)).Err()
	if err != nil {
		s.log.Warn("could not announce the new key set; other replicas pick it up at their next sync", "err", err)
	}
}

// SubscribeKeys subscribes to the key-set channel (Redis pub/sub under the
// key prefix) and returns once Redis confirmed the subscription. The
// channel receives a value, coalesced, after every PutKeys by any client
// with the same prefix, and after go-redis re-subscribed following a lost
// connection (writes may have been missed meanwhile). It is closed when ctx
// is done.
func (s *Store) SubscribeKeys(ctx context.Context) (<-chan struct{}, error) {
	ps := s.c.Subscribe(ctx, s.keysChannel())
	if _, err := ps.Receive(ctx); err != nil {
		_ = ps.Close()
		return nil, unavailable("subscribe keys", err)
	}
	in := ps.ChannelWithSubscriptions()
	out := make(chan struct{}, 1)
	go func() {
		defer close(out)
		defer func() { _ = ps.Close() }()
		for {
			select {
			case <-ctx.Done():
				return
			case msg, ok := <-in:
				if !ok {
					return
				}
				switch msg.(type) {
				case *goredis.Message, *goredis.Subscription:
				default:
					continue
				}
				select {
				case out <- struct{}{}:
				default: // a pending value already stands for this one
				}
			}
		}
	}()
	return out, nil
}
