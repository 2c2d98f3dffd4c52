package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/fedbroker/fedbroker/broker/storage"
)

// Creating a record replaces an expired one under the same key, in one
// statement: the conflict's update applies only when the stored row has
// expired ($4), so 0 rows changed means a live record holds the key.

// CreateAuthRequest stores r until r.Expiry; ErrAlreadyExists if a live
// request has r.ID. A request that expired already is not written.
func (s *Store) CreateAuthRequest(ctx context.Context, r storage.AuthRequest) error {
	data, err := encode(r)
	if err != nil {
		return err
	}
	now := s.now()
	if !now.Before(r.Expiry) {
		return nil
	}
	n, err := affected(s.w.ExecContext(ctx, `INSERT INTO auth_requests (id, data, expiry) VALUES ($1, $2, $3)
ON CONFLICT (id) DO UPDATE SET data = excluded.data, expiry = excluded.expiry
WHERE auth_requests.expiry <= $4`, r.ID, data, ns(r.Expiry), ns(now)))
	switch {
	case err != nil:
		return s.unavailable("create auth request", err)
	case n == 0:
		return fmt.Errorf("%s: auth request: %w", s.d.name, storage.ErrAlreadyExists)
	}
	return nil
}

// GetAuthRequest returns the request with that id.
func (s *Store) GetAuthRequest(ctx context.Context, id string) (storage.AuthRequest, error) {
	var data []byte
	err := s.r.QueryRowContext(ctx, `SELECT data FROM auth_requests WHERE id = $1 AND expiry > $2`, id, ns(s.now())).Scan(&data)
	return s.authRequest("get auth request", data, err)
}

func (s *Store) authRequest(op string, data []byte, err error) (storage.AuthRequest, error) {
	var r storage.AuthRequest
	switch {
	case noRows(err):
		return r, s.notFound("auth request")
	case err != nil:
		return r, s.unavailable(op, err)
	}
	err = s.decode("auth request", data, &r)
	return r, err
}

// UpdateAuthRequest replaces a live request, keeping its stored expiry.
func (s *Store) UpdateAuthRequest(ctx context.Context, r storage.AuthRequest) error {
	data, err := encode(r)
	if err != nil {
		return err
	}
	n, err := affected(s.w.ExecContext(ctx, `UPDATE auth_requests SET data = $1 WHERE id = $2 AND expiry > $3`, data, r.ID, ns(s.now())))
	switch {
	case err != nil:
		return s.unavailable("update auth request", err)
	case n == 0:
		return s.notFound("auth request")
	}
	return nil
}

// TakeAuthRequest returns and deletes the request, in one statement.
func (s *Store) TakeAuthRequest(ctx context.Context, id string) (storage.AuthRequest, error) {
	var data []byte
	var exp int64
	err := s.w.QueryRowContext(ctx, `DELETE FROM auth_requests WHERE id = $1 RETURNING data, expiry`, id).Scan(&data, &exp)
	if err == nil && exp <= ns(s.now()) {
		err = sql.ErrNoRows // it had expired: deleted, and not found
	}
	return s.authRequest("take auth request", data, err)
}

// CreateCode stores c under storage.Hash(code) until c.Expiry.
func (s *Store) CreateCode(ctx context.Context, code string, c storage.AuthCode) error {
	data, err := encode(c)
	if err != nil {
		return err
	}
	now := s.now()
	if !now.Before(c.Expiry) {
		return nil
	}
	n, err := affected(s.w.ExecContext(ctx, `INSERT INTO codes (hash, data, expiry, used) VALUES ($1, $2, $3, 0)
ON CONFLICT (hash) DO UPDATE SET data = excluded.data, expiry = excluded.expiry, used = 0
WHERE codes.expiry <= $4`, storage.Hash(code), data, ns(c.Expiry), ns(now)))
	switch {
	case err != nil:
		return s.unavailable("create code", err)
	case n == 0:
		return fmt.Errorf("%s: code: %w", s.d.name, storage.ErrAlreadyExists)
	}
	return nil
}

// ConsumeCode marks the code used and returns it; see storage.Storage. The
// redemption counts in one statement, atomically with the epoch's tick
// (writeReturning).
func (s *Store) ConsumeCode(ctx context.Context, code string) (storage.AuthCode, error) {
	var data []byte
	var used int64
	_, err := s.writeReturning(ctx, "consume code", consumeCodeSQL,
		[]any{storage.Hash(code), ns(s.now())}, &data, &used)
	if err != nil {
		return storage.AuthCode{}, err
	}
	return s.consumed(data, used)
}

// consumeCodeSQL counts a redemption of the live code whose hash is $1 at
// $2, returning its record and the redemptions so far.
const consumeCodeSQL = `UPDATE codes SET used = used + 1 WHERE hash = $1 AND expiry > $2 RETURNING data, used`

// consumed answers a redemption from what consumeCodeSQL returned (used 0:
// no row): the record, ErrNotFound or ErrAlreadyUsed with the record.
func (s *Store) consumed(data []byte, used int64) (storage.AuthCode, error) {
	var c storage.AuthCode
	if used == 0 {
		return c, s.notFound("code")
	}
	if err := s.decode("code", data, &c); err != nil {
		return storage.AuthCode{}, err
	}
	if s.lost(c.Created) {
		return storage.AuthCode{}, s.notFound("code from before storage lost state")
	}
	if used != 1 {
		return c, fmt.Errorf("%s: code: %w", s.d.name, storage.ErrAlreadyUsed)
	}
	return c, nil
}

// CreateSession stores se under storage.Hash(se.ID) until se.Expiry, with
// the columns UpstreamSessions looks it up by.
func (s *Store) CreateSession(ctx context.Context, se storage.Session) error {
	data, err := encode(se) // Session.ID is not part of the JSON form.
	if err != nil {
		return err
	}
	now := s.now()
	if !now.Before(se.Expiry) {
		return nil
	}
	n, err := affected(s.w.ExecContext(ctx, `INSERT INTO sessions
	(hash, subject, data, expiry, connector_id, upstream_sub, upstream_sid) VALUES ($1, $2, $3, $4, $6, $7, $8)
ON CONFLICT (hash) DO UPDATE SET subject = excluded.subject, data = excluded.data, expiry = excluded.expiry,
	connector_id = excluded.connector_id, upstream_sub = excluded.upstream_sub, upstream_sid = excluded.upstream_sid
WHERE sessions.expiry <= $5`, storage.Hash(se.ID), se.Subject, data, ns(se.Expiry), ns(now),
		se.ConnectorID, se.Grant.UpstreamSubject, se.UpstreamSID))
	switch {
	case err != nil:
		return s.unavailable("create session", err)
	case n == 0:
		return fmt.Errorf("%s: session: %w", s.d.name, storage.ErrAlreadyExists)
	}
	return nil
}

// GetSession returns the session whose cookie secret is id, with ID set.
func (s *Store) GetSession(ctx context.Context, id string) (storage.Session, error) {
	var se storage.Session
	var data []byte
	err := s.r.QueryRowContext(ctx, `SELECT data FROM sessions WHERE hash = $1 AND expiry > $2`, storage.Hash(id), ns(s.now())).Scan(&data)
	switch {
	case noRows(err):
		return se, s.notFound("session")
	case err != nil:
		return se, s.unavailable("get session", err)
	}
	if err := s.decode("session", data, &se); err != nil {
		return storage.Session{}, err
	}
	if s.lost(se.Created) {
		return storage.Session{}, s.notFound("session from before storage lost state")
	}
	se.ID = id
	return se, nil
}

// DeleteSession deletes the session (a logout, so the epoch ticks with
// it); ErrNotFound if there is none.
func (s *Store) DeleteSession(ctx context.Context, id string) error {
	var exp int64
	found, err := s.writeReturning(ctx, "delete session", `DELETE FROM sessions WHERE hash = $1 RETURNING expiry`,
		[]any{storage.Hash(id)}, &exp)
	switch {
	case err != nil:
		return err
	case !found || exp <= ns(s.now()):
		return s.notFound("session")
	}
	return nil
}

// GetKeys returns the key set and its version.
func (s *Store) GetKeys(ctx context.Context) ([]byte, int64, error) {
	var data []byte
	var v int64
	err := s.r.QueryRowContext(ctx, `SELECT data, version FROM keyset WHERE slot = 1`).Scan(&data, &v)
	switch {
	case noRows(err):
		return nil, 0, s.notFound("keys")
	case err != nil:
		return nil, 0, s.unavailable("get keys", err)
	}
	return data, v, nil
}

// PutKeys stores data if the stored version is still expect. On
// PostgreSQL the NOTIFY that announces it is part of the same transaction.
func (s *Store) PutKeys(ctx context.Context, data []byte, expect int64) (int64, error) {
	var v int64
	err := s.write(ctx, "put keys", func(tx *sql.Tx) (bool, error) {
		v = 0
		var err error
		if expect == 0 {
			var n int64
			n, err = affected(tx.ExecContext(ctx, `INSERT INTO keyset (slot, data, version) VALUES (1, $1, 1) ON CONFLICT (slot) DO NOTHING`, data))
			if n == 1 {
				v = 1
			}
		} else {
			err = tx.QueryRowContext(ctx, `UPDATE keyset SET data = $1, version = version + 1 WHERE slot = 1 AND version = $2 RETURNING version`,
				data, expect).Scan(&v)
			if noRows(err) {
				err = nil
			}
		}
		if err == nil && v != 0 && s.d.notifyKeys != nil {
			err = s.d.notifyKeys(ctx, tx, v)
		}
		return false, err
	})
	switch {
	case err != nil:
		return 0, err
	case v == 0:
		return 0, fmt.Errorf("%s: keys: the stored version is not %d: %w", s.d.name, expect, storage.ErrConflict)
	}
	if s.d.notifyKeys == nil {
		s.notes.Notify()
	}
	return v, nil
}

// AcquireLease takes or renews the named lease for holder, in one
// statement: the row is written when it is absent, expired or holder's.
func (s *Store) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	now := s.now()
	n, err := affected(s.w.ExecContext(ctx, `INSERT INTO leases (name, holder, expiry) VALUES ($1, $2, $3)
ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expiry = excluded.expiry
WHERE leases.holder = excluded.holder OR leases.expiry <= $4`, name, holder, ns(now.Add(ttl)), ns(now)))
	if err != nil {
		return false, s.unavailable("acquire lease", err)
	}
	return n == 1, nil
}

// MarkSeen records id in namespace until `until`; true when it was new. A
// record is a security write (a revocation, a replay seen), so the epoch
// ticks with it.
func (s *Store) MarkSeen(ctx context.Context, namespace, id string, until time.Time) (bool, error) {
	now := s.now()
	if !now.Before(until) {
		// Nothing to remember; report whether it is still recorded.
		seen, err := s.seenAt(ctx, s.r, namespace, id, now)
		if err != nil {
			return false, s.unavailable("mark seen", err)
		}
		return !seen, nil
	}
	var one int
	fresh, err := s.writeReturning(ctx, "mark seen", markSeenSQL, []any{namespace, id, ns(until), ns(now)}, &one)
	return fresh, err
}

// markSeenSQL records id $2 in namespace $1 until $3 unless it is
// recorded at $4, returning a row when it recorded it.
const markSeenSQL = `INSERT INTO seen (namespace, id, until) VALUES ($1, $2, $3)
ON CONFLICT (namespace, id) DO UPDATE SET until = excluded.until
WHERE seen.until <= $4
RETURNING 1`

// seenAt reports whether id is recorded in namespace at now, on q.
func (s *Store) seenAt(ctx context.Context, q querier, namespace, id string, now time.Time) (bool, error) {
	var one int
	err := q.QueryRowContext(ctx, `SELECT 1 FROM seen WHERE namespace = $1 AND id = $2 AND until > $3`, namespace, id, ns(now)).Scan(&one)
	switch {
	case noRows(err):
		return false, nil
	case err != nil:
		return false, err
	}
	return true, nil
}

// CreateLink stores l unless l.Key exists, and returns the stored link.
func (s *Store) CreateLink(ctx context.Context, l storage.Link) (storage.Link, bool, error) {
	data, err := encode(l)
	if err != nil {
		return storage.Link{}, false, err
	}
	for range maxAttempts {
		n, err := affected(s.w.ExecContext(ctx, `INSERT INTO links (link_key, data) VALUES ($1, $2) ON CONFLICT (link_key) DO NOTHING`, l.Key, data))
		if err != nil {
			return storage.Link{}, false, s.unavailable("create link", err)
		}
		if n == 1 {
			var got storage.Link
			err := s.decode("link", data, &got)
			return got, true, err
		}
		got, err := s.GetLink(ctx, l.Key)
		if err == nil {
			return got, false, nil
		}
		if !isNotFound(err) {
			return storage.Link{}, false, err
		}
		// Deleted between the two statements: try again.
	}
	return storage.Link{}, false, s.unavailable("create link", fmt.Errorf("link %q keeps appearing and vanishing", l.Key))
}

// GetLink returns the link of key.
func (s *Store) GetLink(ctx context.Context, key string) (storage.Link, error) {
	var l storage.Link
	var data []byte
	err := s.r.QueryRowContext(ctx, `SELECT data FROM links WHERE link_key = $1`, key).Scan(&data)
	switch {
	case noRows(err):
		return l, s.notFound("link")
	case err != nil:
		return l, s.unavailable("get link", err)
	}
	err = s.decode("link", data, &l)
	return l, err
}

// ListLinks returns every link, sorted by key.
func (s *Store) ListLinks(ctx context.Context) ([]storage.Link, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT data FROM links ORDER BY link_key`)
	if err != nil {
		return nil, s.unavailable("list links", err)
	}
	defer rows.Close()
	out := []storage.Link{}
	for rows.Next() {
		var data []byte
		if err := rows.Scan(&data); err != nil {
			return nil, s.unavailable("list links", err)
		}
		var l storage.Link
		if err := s.decode("link", data, &l); err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	if err := rows.Err(); err != nil {
		return nil, s.unavailable("list links", err)
	}
	return out, nil
}

// DeleteLink deletes the link of key; ErrNotFound if there is none.
func (s *Store) DeleteLink(ctx context.Context, key string) error {
	n, err := affected(s.w.ExecContext(ctx, `DELETE FROM links WHERE link_key = $1`, key))
	switch {
	case err != nil:
		return s.unavailable("delete link", err)
	case n == 0:
		return s.notFound("link")
	}
	return nil
}

func isNotFound(err error) bool { return errors.Is(err, storage.ErrNotFound) }
