package keys

import (
	"context"
	"time"

	"github.com/fedbroker/fedbroker/broker/storage"
)

// runSync is Run's loop: it calls Refresh every interval and, when the store
// implements storage.KeyNotifier, as soon as any replica stored a new key
// set, so a rotation reaches every replica within moments. The timer stays
// as the fallback for lost notifications; a subscription that fails or ends
// is retried at the next tick. Errors are logged; the Manager keeps serving
// the keys it has.
func (m *Manager) runSync(ctx context.Context, interval time.Duration) {
	if m.static {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	defer m.sub.Store(false)
	notifier, _ := m.store.(storage.KeyNotifier)
	var notes <-chan struct{}
	subscribe := func() {
		if notifier == nil || notes != nil {
			return
		}
		ch, err := notifier.SubscribeKeys(ctx)
		if err != nil {
			if ctx.Err() == nil {
				m.log.Warn("cannot subscribe to key-set changes; syncing on the timer only until it works", "err", err)
			}
			return
		}
		notes = ch
		m.sub.Store(true)
	}
	subscribe()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			subscribe()
		case _, ok := <-notes:
			if !ok {
				notes = nil
				m.sub.Store(false)
				continue
			}
		}
		if err := m.Refresh(ctx); err != nil && ctx.Err() == nil {
			m.log.Warn("key sync failed; serving the keys in memory", "err", err)
		}
	}
}

// subscribed reports whether runSync holds a key-change subscription.
func (m *Manager) subscribed() bool { return m.sub.Load() }
