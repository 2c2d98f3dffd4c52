package sqlstore

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fedbroker/fedbroker/broker/storage"
)

// SubscribeKeys returns a channel that receives a value, coalesced, soon
// after any client of the database stored a key set with PutKeys; see
// storage.KeyNotifier. It is closed when ctx is done or the Store closed.
//
// On PostgreSQL the Store keeps one connection LISTENing on the channel
// fedbroker_keys (started by the first subscription, which returns once
// PostgreSQL confirmed it) and fans its notifications out to every
// subscriber. When that connection is lost it is re-established, with a
// growing pause up to 5 s, and every subscriber then receives a value:
// writes may have been missed meanwhile. On SQLite, a single-node store,
// subscribers hear of this Store's own PutKeys.
func (s *Store) SubscribeKeys(ctx context.Context) (<-chan struct{}, error) {
	if s.listen != nil {
		if err := s.listen.ensure(ctx); err != nil {
			return nil, s.unavailable("subscribe keys", err)
		}
	}
	ch, ok := s.notes.Subscribe(ctx)
	if !ok {
		return nil, fmt.Errorf("%s: subscribe keys: store closed: %w", s.d.name, storage.ErrUnavailable)
	}
	return ch, nil
}

// listener is a Store's LISTEN connection on PostgreSQL.
type listener struct {
	s   *Store
	cfg *pgx.ConnConfig

	mu      sync.Mutex
	running bool
}

// ensure starts the listener unless it runs: it connects and LISTENs (with
// ctx), then hands the connection to a goroutine that lives until the
// Store closes.
func (l *listener) ensure(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.running {
		return nil
	}
	if l.s.bg.Err() != nil {
		return fmt.Errorf("store closed")
	}
	c, err := l.connect(ctx)
	if err != nil {
		return err
	}
	l.running = true
	l.s.wg.Add(1)
	go l.run(c)
	return nil
}

func (l *listener) connect(ctx context.Context) (*pgx.Conn, error) {
	c, err := pgx.ConnectConfig(ctx, l.cfg)
	if err != nil {
		return nil, err
	}
	if _, err := c.Exec(ctx, "LISTEN "+keysChannel); err != nil {
		_ = c.Close(context.Background())
		return nil, err
	}
	return c, nil
}

// run waits for notifications on c, reconnecting when it is lost, until
// the Store closes.
func (l *listener) run(c *pgx.Conn) {
	defer l.s.wg.Done()
	ctx := l.s.bg
	for {
		err := l.wait(ctx, c)
		_ = c.Close(context.Background())
		if ctx.Err() != nil {
			return
		}
		l.s.log.Warn("postgres: lost the LISTEN connection for key-set changes; reconnecting (replicas still sync keys on their timer)", "err", err)
		if c = l.reconnect(ctx); c == nil {
			return
		}
		l.s.log.Info("postgres: LISTEN connection for key-set changes re-established")
		l.s.notes.Notify() // changes may have been missed meanwhile
	}
}

func (l *listener) wait(ctx context.Context, c *pgx.Conn) error {
	for {
		if _, err := c.WaitForNotification(ctx); err != nil {
			return err
		}
		l.s.notes.Notify()
	}
}

// reconnect retries connect until it succeeds (nil once the Store closed).
func (l *listener) reconnect(ctx context.Context) *pgx.Conn {
	pause := 100 * time.Millisecond
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(pause):
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		c, err := l.connect(cctx)
		cancel()
		if err == nil {
			return c
		}
		l.s.log.Debug("postgres: LISTEN reconnect failed", "err", err)
		pause = min(2*pause, 5*time.Second)
	}
}
