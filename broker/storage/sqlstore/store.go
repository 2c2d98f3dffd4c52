package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fedbroker/fedbroker/broker/storage"
)

var (
	_ storage.Storage     = (*Store)(nil)
	_ storage.KeyNotifier = (*Store)(nil)
)

// DefaultGCInterval is how often expired rows are deleted unless
// Options.GCInterval says otherwise.
const DefaultGCInterval = time.Minute

// Options configure a Store.
type Options struct {
	// Logger receives warnings (corrupt rows, a lost LISTEN connection,
	// garbage collection failures) and the epoch's errors (default:
	// discard).
	Logger *slog.Logger
	// GCInterval is how often expired rows are deleted (default
	// DefaultGCInterval).
	GCInterval time.Duration
	// NoMigrate opens the database without applying migrations, so that a
	// tool can list them first (PendingMigrations) and apply them
	// (Migrate). Until Migrate has run on such a Store, its epoch is not
	// ticked and no garbage is collected; its other methods fail while the
	// schema is missing.
	NoMigrate bool

	now func() time.Time // the clock (tests); default time.Now
}

// Store is a storage.Storage on SQLite or PostgreSQL. It is safe for
// concurrent use.
type Store struct {
	d   *dialect
	w   *sql.DB // writes (SQLite: one connection)
	r   *sql.DB // reads (PostgreSQL: the same pool as w)
	log *slog.Logger
	now func() time.Time

	epoch   *storage.EpochTracker
	ready   atomic.Bool // migrated and ticked once: new connections tick
	gcEvery time.Duration

	notes  storage.Broadcast
	listen *listener // PostgreSQL only

	bg       context.Context // cancelled by Close
	stop     context.CancelFunc
	startBG  sync.Once
	wg       sync.WaitGroup
	closeErr error
	closed   sync.Once
}

func newStore(d *dialect, opts Options) *Store {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	every := opts.GCInterval
	if every <= 0 {
		every = DefaultGCInterval
	}
	now := opts.now
	if now == nil {
		now = time.Now
	}
	s := &Store{d: d, log: log, now: now, epoch: storage.NewEpochTracker(log), gcEvery: every}
	s.bg, s.stop = context.WithCancel(context.Background())
	return s
}

// start finishes Open: migrate (unless opts.NoMigrate), which also ticks
// the epoch and starts the garbage collector.
func (s *Store) start(ctx context.Context, opts Options) (*Store, error) {
	if opts.NoMigrate {
		return s, nil
	}
	if err := s.Migrate(ctx); err != nil {
		_ = s.Close()
		return nil, err
	}
	return s, nil
}

// begin ticks the epoch for the first time and starts what runs in the
// background; Migrate calls it once the schema is in place.
func (s *Store) begin(ctx context.Context) error {
	if err := s.Heartbeat(ctx); err != nil {
		return err
	}
	s.ready.Store(true)
	s.startBG.Do(func() {
		s.wg.Add(1)
		go s.gcLoop()
	})
	return nil
}

// Kind is "sqlite" or "postgres".
func (s *Store) Kind() string { return s.d.name }

// Ping reports whether the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.w.PingContext(ctx); err != nil {
		return s.unavailable("ping", err)
	}
	if s.r != s.w {
		if err := s.r.PingContext(ctx); err != nil {
			return s.unavailable("ping", err)
		}
	}
	return nil
}

// Close stops the garbage collector and the LISTEN connection, closes every
// key-set subscription and the connections. Later calls fail with
// storage.ErrUnavailable.
func (s *Store) Close() error {
	s.closed.Do(func() {
		s.stop()
		s.wg.Wait()
		s.notes.Close()
		err := s.w.Close()
		if s.r != s.w {
			err = errors.Join(err, s.r.Close())
		}
		if err != nil {
			s.closeErr = s.unavailable("close", err)
		}
	})
	return s.closeErr
}

// querier is what *sql.DB, *sql.Conn and *sql.Tx have in common.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// maxAttempts bounds the retries of a transaction that PostgreSQL aborted
// for a deadlock or a serialization failure.
const maxAttempts = 4

// write runs fn in one transaction on the writer. fn reports whether it
// changed security state (a rotation, a redemption, a revocation, a replay
// record, a logout); then the epoch ticks in the same transaction, as its
// last statement so that the epoch row stays locked only until the commit,
// and the tracker observes the tick once the commit succeeded. fn may run
// more than once (a retried transaction): it must set its results afresh
// each time. Its errors are database errors; what it decides (not found,
// reuse) it reports through its results.
func (s *Store) write(ctx context.Context, op string, fn func(tx *sql.Tx) (security bool, err error)) error {
	var err error
	for attempt := 1; attempt <= maxAttempts; attempt++ {
		if err = s.writeOnce(ctx, fn); err == nil || !s.d.retryable(err) {
			break
		}
	}
	if err != nil {
		return s.unavailable(op, err)
	}
	return nil
}

func (s *Store) writeOnce(ctx context.Context, fn func(tx *sql.Tx) (bool, error)) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	security, err := fn(tx)
	var t tick
	if err == nil && security {
		t, err = s.tick(ctx, sqlRows{tx})
	}
	if err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	if security {
		s.epoch.Observe(t.epoch, t.change)
	}
	return nil
}

// writeReturning runs stmt, a security write with RETURNING that changes
// at most one row, scanning the row into dest; when it changed one, the
// epoch ticks atomically with it. It reports whether there was a row. On
// PostgreSQL the write and the tick are one statement (WITH w AS (stmt),
// t AS (tick if w has a row) SELECT …): one round trip, locking the
// written row before the epoch row as every transaction does. Elsewhere
// they share a transaction (Store.write).
func (s *Store) writeReturning(ctx context.Context, op, stmt string, args []any, dest ...any) (bool, error) {
	if !s.d.withWrite {
		found := false
		err := s.write(ctx, op, func(tx *sql.Tx) (bool, error) {
			err := tx.QueryRowContext(ctx, stmt, args...).Scan(dest...)
			if noRows(err) {
				found = false
				return false, nil
			}
			found = err == nil
			return found, err
		})
		return found, err
	}
	q := `WITH w AS (` + stmt + `), t AS (` + tickUpdateSQL(len(args), ` AND EXISTS (SELECT 1 FROM w)`) + `)
SELECT w.*, t.id, t.since_ns, t.n FROM w LEFT JOIN t ON true`
	var (
		id       sql.NullString
		since, n sql.NullInt64
		a        tickArgs
		err      error
	)
	for attempt := 1; attempt <= maxAttempts; attempt++ {
		a = s.tickArgs()
		err = s.w.QueryRowContext(ctx, q, append(args[:len(args):len(args)], a.update()...)...).Scan(append(dest, &id, &since, &n)...)
		if err == nil || !s.d.retryable(err) {
			break
		}
	}
	switch {
	case noRows(err):
		return false, nil
	case err != nil:
		return false, s.unavailable(op, err)
	case id.Valid:
		t := a.updated(id.String, since.Int64, n.Int64)
		s.epoch.Observe(t.epoch, t.change)
	default:
		// No epoch row to advance: the database lost it. The heartbeat
		// creates one now, counting the loss, as it would within
		// storage.EpochInterval.
		if err := s.Heartbeat(ctx); err != nil {
			s.log.Warn(s.d.name+": storage epoch tick after "+op+" failed", "err", err)
		}
	}
	return true, nil
}

// affected returns how many rows a statement changed.
func affected(res sql.Result, err error) (int64, error) {
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (s *Store) unavailable(op string, err error) error {
	if errors.Is(err, storage.ErrUnavailable) {
		return err
	}
	return fmt.Errorf("%s: %s: %w: %w", s.d.name, op, storage.ErrUnavailable, err)
}

func (s *Store) notFound(what string) error {
	return fmt.Errorf("%s: %s: %w", s.d.name, what, storage.ErrNotFound)
}

// corrupt logs a row that does not decode and returns it as unavailable.
func (s *Store) corrupt(kind string, err error) error {
	s.log.Warn(s.d.name+": corrupt row", "kind", kind, "err", err)
	return fmt.Errorf("%s: corrupt %s: %v: %w", s.d.name, kind, err, storage.ErrUnavailable)
}

func encode(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: encode: %w", err)
	}
	return b, nil
}

func (s *Store) decode(kind string, data []byte, v any) error {
	if err := json.Unmarshal(data, v); err != nil {
		return s.corrupt(kind, err)
	}
	return nil
}

// Times are stored as Unix nanoseconds; the zero time as 0. Times outside
// what int64 nanoseconds hold (before 1678, after 2262) are clamped.
var (
	minNS = time.Unix(0, math.MinInt64+1)
	maxNS = time.Unix(0, math.MaxInt64)
)

func ns(t time.Time) int64 {
	switch {
	case t.IsZero():
		return 0
	case t.Before(minNS):
		return math.MinInt64 + 1
	case t.After(maxNS):
		return math.MaxInt64
	}
	return t.UnixNano()
}

func fromNS(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// lost reports whether a record created at created may have been lost with
// state from before the current epoch.
func (s *Store) lost(created time.Time) bool {
	return storage.CreatedBefore(created, s.Since())
}
