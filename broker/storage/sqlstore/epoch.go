package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/fedbroker/fedbroker/broker/storage"
)

// The store's epoch (see storage.Epoch) is the one row of the table epoch:
// its id, since_ns (Unix nanoseconds, 0 for an epoch that distrusts
// nothing) and the counter n. A tick
//
//   - advances n when it is not below what this Store saw;
//   - writes a new epoch forward (id, since now, n past what this Store
//     saw by storage.EpochJump) when n is below: a restore from an older
//     backup, or a failover that lost writes;
//   - creates the row when there is none: a new database (since 0 for a
//     Store that saw none) or one that lost everything.
//
// A tick runs in the same transaction as every security write (Store.write),
// at Open, on Heartbeat, on every new PostgreSQL connection before it
// carries anything (so the first statement after PostgreSQL came back from
// a restore already sees the new epoch), and is observed by the
// storage.EpochTracker once committed.

// tickUpdateSQL is the tick's UPDATE, its parameters numbered from off+1
// (see tickArgs.update) and cond added to its WHERE. Every SET expression
// reads the row as it was, on both dialects. The row comes back with the
// new id only when it was written forward.
func tickUpdateSQL(off int, cond string) string {
	p := func(i int) string { return "$" + strconv.Itoa(off+i) }
	return `UPDATE epoch SET
	id = CASE WHEN n >= ` + p(1) + ` THEN id ELSE ` + p(2) + ` END,
	since_ns = CASE WHEN n >= ` + p(1) + ` THEN since_ns ELSE ` + p(3) + ` END,
	n = CASE WHEN n >= ` + p(1) + ` THEN n + 1 ELSE ` + p(4) + ` END
WHERE slot = 1` + cond + `
RETURNING id, since_ns, n`
}

var tickUpdate = tickUpdateSQL(0, "")

// tickInsert: $1 new id, $2 since, $3 n. No row when another client
// created it meanwhile (then the update runs again).
const tickInsert = `INSERT INTO epoch (slot, id, since_ns, n) VALUES (1, $1, $2, $3)
ON CONFLICT (slot) DO NOTHING
RETURNING id, since_ns, n`

// tick is what one tick found.
type tick struct {
	epoch  storage.Epoch
	change storage.EpochChange
}

// scanner is a row to scan: *sql.Row or pgx.Row.
type scanner interface{ Scan(dest ...any) error }

// rowQuerier runs a query returning one row; it lets a tick run on
// database/sql (a transaction, the pool) and on a raw pgx connection.
type rowQuerier interface {
	queryRow(ctx context.Context, query string, args ...any) scanner
}

type sqlRows struct{ q querier }

func (r sqlRows) queryRow(ctx context.Context, query string, args ...any) scanner {
	return r.q.QueryRowContext(ctx, query, args...)
}

// tickArgs are one tick's parameters: what this Store saw, the id of a
// new epoch should it write one, and the time.
type tickArgs struct {
	seen int64
	id   string
	now  time.Time
}

func (s *Store) tickArgs() tickArgs {
	return tickArgs{seen: s.epoch.Seen(), id: storage.NewEpochID(), now: s.now()}
}

// update returns the arguments of tickUpdateSQL: seen, new id, now, the
// counter written forward.
func (a tickArgs) update() []any {
	return []any{a.seen, a.id, a.now.UnixNano(), a.seen + storage.EpochJump}
}

// updated is what tickUpdateSQL returned.
func (a tickArgs) updated(id string, since, n int64) tick {
	t := tick{epoch: storage.Epoch{ID: id, Since: fromNS(since), N: n}}
	if id == a.id {
		t.change = storage.EpochBehind
	}
	return t
}

// tick runs one tick on q; the caller hands the result to the tracker once
// it is committed.
func (s *Store) tick(ctx context.Context, q rowQuerier) (tick, error) {
	a := s.tickArgs()
	for range 3 {
		var id string
		var since, n int64
		err := q.queryRow(ctx, tickUpdate, a.update()...).Scan(&id, &since, &n)
		if err == nil {
			return a.updated(id, since, n), nil
		}
		if !noRows(err) {
			return tick{}, err
		}
		first, n := int64(0), int64(1) // a new store: nothing to distrust
		if a.seen != 0 {
			first, n = a.now.UnixNano(), a.seen+storage.EpochJump
		}
		err = q.queryRow(ctx, tickInsert, a.id, first, n).Scan(&id, &since, &n)
		if err == nil {
			return tick{epoch: storage.Epoch{ID: id, Since: fromNS(since), N: n}, change: storage.EpochCreated}, nil
		}
		if !noRows(err) {
			return tick{}, err
		}
	}
	return tick{}, errors.New("storage epoch: the epoch row keeps appearing and vanishing")
}

// noRows reports whether err says a query returned no row (pgx's
// ErrNoRows is database/sql's).
func noRows(err error) bool { return errors.Is(err, sql.ErrNoRows) }

// Since returns the start of the epoch this Store last saw; see
// storage.Storage.
func (s *Store) Since() time.Time { return s.epoch.Since() }

// Heartbeat ticks the epoch; see storage.Storage.
func (s *Store) Heartbeat(ctx context.Context) error {
	t, err := s.tick(ctx, sqlRows{s.w})
	if err != nil {
		return s.unavailable("storage epoch", err)
	}
	s.epoch.Observe(t.epoch, t.change)
	return nil
}

// Regressions counts the times this Store found the database emptied or
// rolled back, for metrics.
func (s *Store) Regressions() int64 { return s.epoch.Regressions() }

// StartEpoch starts a new epoch now, whatever the stored one: every
// refresh family, code and session stored before is refused from then on,
// by every replica (at its next tick), and access tokens issued before are
// no longer accepted where the broker checks revocation. Run it once after
// restoring a backup while every broker was stopped, which no running
// Store could notice. It is not counted as a regression. See
// storage.EpochStarter.
func (s *Store) StartEpoch(ctx context.Context) (storage.Epoch, error) {
	now := s.now()
	id := storage.NewEpochID()
	var t tick
	var since int64
	err := s.write(ctx, "start epoch", func(tx *sql.Tx) (bool, error) {
		var n int64
		err := tx.QueryRowContext(ctx, `SELECT n FROM epoch WHERE slot = 1`+s.d.forUpdate).Scan(&n)
		if err != nil && !noRows(err) {
			return false, err
		}
		n = max(n, s.epoch.Seen()) + storage.EpochJump
		err = tx.QueryRowContext(ctx, `INSERT INTO epoch (slot, id, since_ns, n) VALUES (1, $1, $2, $3)
ON CONFLICT (slot) DO UPDATE SET id = excluded.id, since_ns = excluded.since_ns, n = excluded.n
RETURNING id, since_ns, n`, id, now.UnixNano(), n).Scan(&t.epoch.ID, &since, &t.epoch.N)
		return false, err
	})
	if err != nil {
		return storage.Epoch{}, err
	}
	t.epoch.Since = fromNS(since)
	if t.epoch.ID != id {
		return storage.Epoch{}, fmt.Errorf("%s: start epoch: stored %s, want %s: %w", s.d.name, t.epoch.ID, id, storage.ErrUnavailable)
	}
	s.epoch.Observe(t.epoch, storage.EpochSame) // a new id, ahead: adopted with a warning
	return t.epoch, nil
}
