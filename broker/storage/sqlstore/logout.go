package sqlstore

import (
	"context"
	"database/sql"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/fedbroker/fedbroker/broker/storage"
)

// Single logout (migration 0002): sessions carry connector_id,
// upstream_sub and upstream_sid columns, set by CreateSession, with
// partial indexes for UpstreamSessions (whose queries repeat the indexes'
// predicate so that the planner may use them); the outbox is the
// deliveries table, its due and attempts in columns (authoritative over
// the JSON's) and indexed by (due, id) for ClaimDeliveries.

// TouchSession adds clientID to the session's clients and sets LastUsed,
// in one transaction with the row locked; see storage.SessionStore.
func (s *Store) TouchSession(ctx context.Context, id, clientID string, now time.Time) error {
	h := storage.Hash(id)
	found := false
	err := s.write(ctx, "touch session", func(tx *sql.Tx) (bool, error) {
		found = false
		var data []byte
		err := tx.QueryRowContext(ctx, `SELECT data FROM sessions WHERE hash = $1 AND expiry > $2`+s.d.forUpdate,
			h, ns(s.now())).Scan(&data)
		if noRows(err) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		var se storage.Session
		if err := s.decode("session", data, &se); err != nil {
			return false, err
		}
		if s.lost(se.Created) {
			return false, nil
		}
		if clientID != "" && !slices.Contains(se.Clients, clientID) {
			se.Clients = append(se.Clients, clientID)
		}
		se.LastUsed = now
		if data, err = encode(se); err != nil {
			return false, err
		}
		found = true
		_, err = tx.ExecContext(ctx, `UPDATE sessions SET data = $2 WHERE hash = $1`, h, data)
		return false, err
	})
	switch {
	case err != nil:
		return err
	case !found:
		return s.notFound("session")
	}
	return nil
}

// storedSession is a sessions row, decoded.
type storedSession struct {
	hash string
	se   storage.Session
}

// sessions runs query (selecting hash, data) and returns the sessions that
// are not from before the epoch and that keep accepts, oldest first (by
// AuthTime, then hash).
func (s *Store) sessions(ctx context.Context, q querier, query string, args []any, keep func(storage.Session) bool) ([]storedSession, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []storedSession
	for rows.Next() {
		var (
			h    string
			data []byte
		)
		if err := rows.Scan(&h, &data); err != nil {
			return nil, err
		}
		var se storage.Session
		if err := s.decode("session", data, &se); err != nil {
			return nil, err
		}
		if s.lost(se.Created) || !keep(se) {
			continue
		}
		out = append(out, storedSession{hash: h, se: se})
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].se.AuthTime, out[j].se.AuthTime
		if !a.Equal(b) {
			return a.Before(b)
		}
		return out[i].hash < out[j].hash
	})
	return out, nil
}

func sessionsOnly(ss []storedSession) []storage.Session {
	out := make([]storage.Session, len(ss))
	for i, x := range ss {
		out[i] = x.se
	}
	return out
}

// ListSessions returns the subject's live sessions, oldest first.
func (s *Store) ListSessions(ctx context.Context, subject string) ([]storage.Session, error) {
	ss, err := s.sessions(ctx, s.r, `SELECT hash, data FROM sessions WHERE subject = $1 AND expiry > $2`,
		[]any{subject, ns(s.now())}, func(se storage.Session) bool { return se.Subject == subject })
	if err != nil {
		return nil, s.unavailable("list sessions", err)
	}
	return sessionsOnly(ss), nil
}

// UpstreamSessions returns the live sessions of an upstream account or
// upstream session of connectorID, through the index on upstream_sid when
// upstreamSID is set and the one on upstream_sub otherwise.
func (s *Store) UpstreamSessions(ctx context.Context, connectorID, upstreamSub, upstreamSID string) ([]storage.Session, error) {
	var query string
	var args []any
	switch {
	case upstreamSID != "":
		query = `SELECT hash, data FROM sessions
WHERE connector_id = $1 AND upstream_sid = $2 AND upstream_sid <> '' AND expiry > $3`
		args = []any{connectorID, upstreamSID, ns(s.now())}
		if upstreamSub != "" {
			query += ` AND upstream_sub = $4`
			args = append(args, upstreamSub)
		}
	case upstreamSub != "":
		query = `SELECT hash, data FROM sessions
WHERE connector_id = $1 AND upstream_sub = $2 AND upstream_sub <> '' AND expiry > $3`
		args = []any{connectorID, upstreamSub, ns(s.now())}
	default:
		return nil, nil
	}
	ss, err := s.sessions(ctx, s.r, query, args, func(se storage.Session) bool {
		return se.ConnectorID == connectorID &&
			(upstreamSub == "" || se.Grant.UpstreamSubject == upstreamSub) &&
			(upstreamSID == "" || se.UpstreamSID == upstreamSID)
	})
	if err != nil {
		return nil, s.unavailable("upstream sessions", err)
	}
	return sessionsOnly(ss), nil
}

// EndSessions deletes the subject's session sid (all of them when sid is
// "") and revokes their refresh families (tombstones until `until`), in
// one transaction that ticks the epoch; see storage.SessionStore.
func (s *Store) EndSessions(ctx context.Context, subject, sid string, until time.Time) ([]storage.Session, int, error) {
	var (
		ended    []storedSession
		families int
	)
	err := s.write(ctx, "end sessions", func(tx *sql.Tx) (bool, error) {
		ended, families = nil, 0
		now := ns(s.now())
		var err error
		ended, err = s.sessions(ctx, tx, `SELECT hash, data FROM sessions WHERE subject = $1 AND expiry > $2`+s.d.forUpdate,
			[]any{subject, now}, func(se storage.Session) bool {
				return se.Subject == subject && (sid == "" || se.PublicID == sid)
			})
		if err != nil {
			return false, err
		}
		if sid != "" && len(ended) == 0 {
			return false, nil
		}
		if sid == "" {
			// The subject's expired sessions and those from before the
			// epoch go too: none of them is usable.
			if _, err := tx.ExecContext(ctx, `DELETE FROM sessions WHERE subject = $1`, subject); err != nil {
				return false, err
			}
		}
		for _, x := range ended {
			if sid == "" {
				break
			}
			if _, err := tx.ExecContext(ctx, `DELETE FROM sessions WHERE hash = $1`, x.hash); err != nil {
				return false, err
			}
		}
		// A code of an ended session being redeemed now holds its
		// session's lock until its family is committed: wait for it, so
		// that endFamilies sees that family (see dialect.lockSession).
		if s.d.lockSession != nil {
			sids := make([]string, 0, len(ended))
			for _, x := range ended {
				sids = append(sids, x.se.PublicID)
			}
			slices.Sort(sids) // one order: two logouts never deadlock
			for _, id := range slices.Compact(sids) {
				if err := s.d.lockSession(ctx, tx, id, true); err != nil {
					return false, err
				}
			}
		}
		families, err = s.endFamilies(ctx, tx, subject, ended, sid == "", until)
		return true, err
	})
	if err != nil {
		return nil, 0, err
	}
	return sessionsOnly(ended), families, nil
}

// endFamilies turns into tombstones until `until` the subject's families
// whose grant names one of the ended sessions (every one of the subject's
// when all is set), and returns how many live ones it revoked.
func (s *Store) endFamilies(ctx context.Context, tx *sql.Tx, subject string, ended []storedSession, all bool, until time.Time) (int, error) {
	sids := map[string]bool{}
	for _, x := range ended {
		sids[x.se.PublicID] = true
	}
	rows, err := tx.QueryContext(ctx, `SELECT id, expires, created_at, grant_data FROM refresh_families
WHERE subject = $1 AND cur IS NOT NULL`+s.d.forUpdate, subject)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	now := ns(s.now())
	var ids []string
	families := 0
	for rows.Next() {
		var (
			id      string
			expires int64
			created sql.NullInt64
			g       []byte
		)
		if err := rows.Scan(&id, &expires, &created, &g); err != nil {
			return 0, err
		}
		if !all {
			var grant storage.Grant
			if err := s.decode("refresh family", g, &grant); err != nil {
				return 0, err
			}
			if !sids[grant.SessionID] {
				continue
			}
		}
		ids = append(ids, id)
		if expires > now && !s.lost(fromNS(created.Int64)) {
			families++
		}
	}
	if err := rows.Err(); err != nil {
		return 0, err
	}
	rows.Close()
	const batch = 500
	for len(ids) > 0 {
		n := min(batch, len(ids))
		args := []any{ns(until)}
		ph := make([]string, n)
		for i, id := range ids[:n] {
			args = append(args, id)
			ph[i] = "$" + strconv.Itoa(i+2)
		}
		ids = ids[n:]
		if _, err := tx.ExecContext(ctx, `UPDATE refresh_families SET expires = $1, `+tombstone+`
WHERE id IN (`+strings.Join(ph, ", ")+`)`, args...); err != nil {
			return 0, err
		}
	}
	return families, nil
}

// PutDelivery stores d, replacing the delivery with its ID.
func (s *Store) PutDelivery(ctx context.Context, d storage.Delivery) error {
	data, err := encode(d)
	if err != nil {
		return err
	}
	if _, err := s.w.ExecContext(ctx, `INSERT INTO deliveries (id, due, attempts, data) VALUES ($1, $2, $3, $4)
ON CONFLICT (id) DO UPDATE SET due = excluded.due, attempts = excluded.attempts, data = excluded.data`,
		d.ID, ns(d.Due), d.Attempts, data); err != nil {
		return s.unavailable("put delivery", err)
	}
	return nil
}

// maxClaim bounds what one ClaimDeliveries takes (a limit above it takes
// that many: "up to limit"), so its UPDATE stays within the parameters a
// statement may have.
const maxClaim = 1000

// ClaimDeliveries takes up to limit due deliveries for lease, in one
// transaction: on PostgreSQL the rows are selected FOR UPDATE SKIP LOCKED,
// so concurrent claimers take different ones without waiting, and a row a
// committed claim moved on no longer qualifies when rechecked; on SQLite
// the write transaction holds the database.
func (s *Store) ClaimDeliveries(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]storage.Delivery, error) {
	if limit <= 0 {
		return nil, nil
	}
	limit = min(limit, maxClaim)
	lock := ""
	if s.d.forUpdate != "" {
		lock = s.d.forUpdate + " SKIP LOCKED"
	}
	due := now.Add(lease)
	var out []storage.Delivery
	err := s.write(ctx, "claim deliveries", func(tx *sql.Tx) (bool, error) {
		out = nil
		rows, err := tx.QueryContext(ctx, `SELECT id, attempts, data FROM deliveries WHERE due <= $1
ORDER BY due, id LIMIT $2`+lock, ns(now), limit)
		if err != nil {
			return false, err
		}
		defer rows.Close()
		var ids []string
		for rows.Next() {
			var (
				id       string
				attempts int
				data     []byte
			)
			if err := rows.Scan(&id, &attempts, &data); err != nil {
				return false, err
			}
			var d storage.Delivery
			if err := s.decode("delivery", data, &d); err != nil {
				return false, err
			}
			d.ID, d.Due, d.Attempts = id, due, attempts+1
			out = append(out, d)
			ids = append(ids, id)
		}
		if err := rows.Err(); err != nil {
			return false, err
		}
		rows.Close()
		if len(ids) == 0 {
			return false, nil
		}
		args := []any{ns(due)}
		ph := make([]string, len(ids))
		for i, id := range ids {
			args = append(args, id)
			ph[i] = "$" + strconv.Itoa(i+2)
		}
		_, err = tx.ExecContext(ctx, `UPDATE deliveries SET due = $1, attempts = attempts + 1
WHERE id IN (`+strings.Join(ph, ", ")+`)`, args...)
		return false, err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteDelivery removes the delivery id.
func (s *Store) DeleteDelivery(ctx context.Context, id string) error {
	if _, err := s.w.ExecContext(ctx, `DELETE FROM deliveries WHERE id = $1`, id); err != nil {
		return s.unavailable("delete delivery", err)
	}
	return nil
}

// PendingDeliveries returns how many deliveries are stored.
func (s *Store) PendingDeliveries(ctx context.Context) (int, error) {
	var n int
	if err := s.r.QueryRowContext(ctx, `SELECT count(*) FROM deliveries`).Scan(&n); err != nil {
		return 0, s.unavailable("pending deliveries", err)
	}
	return n, nil
}
