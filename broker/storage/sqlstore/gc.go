package sqlstore

import (
	"context"
	"time"
)

// gcBatch is the most rows one garbage-collecting statement deletes, so
// that no statement holds the SQLite write lock (or many PostgreSQL row
// locks) for long.
const gcBatch = 1000

// gcPause is the pause between two batches of one table, leaving the
// writer to the hot path in between.
const gcPause = 10 * time.Millisecond

// gcStatements delete a batch of expired rows of each table ($1 now, $2
// the batch size). The outer condition repeats the inner one: on
// PostgreSQL a row renewed after the subquery chose it is checked again
// once locked, and kept.
var gcStatements = []struct{ table, stmt string }{
	{"auth_requests", `DELETE FROM auth_requests WHERE expiry <= $1 AND id IN
	(SELECT id FROM auth_requests WHERE expiry <= $1 LIMIT $2)`},
	{"codes", `DELETE FROM codes WHERE expiry <= $1 AND hash IN
	(SELECT hash FROM codes WHERE expiry <= $1 LIMIT $2)`},
	{"refresh_families", `DELETE FROM refresh_families WHERE expires <= $1 AND id IN
	(SELECT id FROM refresh_families WHERE expires <= $1 LIMIT $2)`},
	{"sessions", `DELETE FROM sessions WHERE expiry <= $1 AND hash IN
	(SELECT hash FROM sessions WHERE expiry <= $1 LIMIT $2)`},
	{"leases", `DELETE FROM leases WHERE expiry <= $1 AND name IN
	(SELECT name FROM leases WHERE expiry <= $1 LIMIT $2)`},
	{"seen", `DELETE FROM seen WHERE until <= $1 AND (namespace, id) IN
	(SELECT namespace, id FROM seen WHERE until <= $1 LIMIT $2)`},
	{"replicas", `DELETE FROM replicas WHERE expiry <= $1 AND id IN
	(SELECT id FROM replicas WHERE expiry <= $1 LIMIT $2)`},
}

// gcLoop collects garbage every s.gcEvery until the Store closes.
func (s *Store) gcLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.gcEvery)
	defer t.Stop()
	for {
		select {
		case <-s.bg.Done():
			return
		case <-t.C:
		}
		if n, err := s.collect(s.bg); err != nil && s.bg.Err() == nil {
			s.log.Warn(s.d.name+": deleting expired rows failed; they are retried at the next interval", "err", err)
		} else if n > 0 {
			s.log.Debug(s.d.name+": deleted expired rows", "rows", n)
		}
	}
}

// collect deletes every row that expired, in batches, and returns how many.
func (s *Store) collect(ctx context.Context) (int64, error) {
	var total int64
	for _, g := range gcStatements {
		for {
			n, err := affected(s.w.ExecContext(ctx, g.stmt, ns(s.now()), gcBatch))
			if err != nil {
				return total, s.unavailable("delete expired "+g.table, err)
			}
			total += n
			if n < gcBatch {
				break
			}
			select {
			case <-ctx.Done():
				return total, ctx.Err()
			case <-time.After(gcPause):
			}
		}
	}
	return total, nil
}
