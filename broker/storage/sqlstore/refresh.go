package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/fedbroker/fedbroker/broker/storage"
)

var errWrongFamily = errors.New("sqlstore: refresh token does not belong to the family")

// familyOf returns the family id of a refresh token "<familyID>.<secret>",
// or false when the token does not have that form (both parts non-empty,
// exactly one '.').
func familyOf(token string) (string, bool) {
	id, secret, ok := strings.Cut(token, ".")
	if !ok || id == "" || secret == "" || strings.IndexByte(secret, '.') >= 0 {
		return "", false
	}
	return id, true
}

// A family is one row of refresh_families; a revoked family is the same
// row turned into a tombstone: cur NULL, expires the tombstone's end, and
// nothing else kept. Creating, rotating and revoking a family all write
// that one row, so they serialize on its key without a lock of their own
// (a revocation racing the family's creation cannot leave both).

// tombstone is the SET list that turns a family row into a tombstone.
const tombstone = `subject = NULL, grant_data = NULL, created_at = NULL, last_used = NULL,
	idle_expiry = NULL, abs_expiry = NULL, cur = NULL, gen = NULL, prev = NULL, rotated = NULL, sealed_next = NULL`

const familyCols = `expires, grant_data, created_at, last_used, idle_expiry, abs_expiry, cur, prev, rotated, sealed_next`

// famRow is a refresh_families row as familyCols reads it.
type famRow struct {
	expires                      int64
	grant                        []byte
	created, lastUsed, idle, abs sql.NullInt64
	cur, prev                    sql.NullString
	rotated                      sql.NullInt64
	sealed                       []byte
}

func (r *famRow) dest() []any {
	return []any{&r.expires, &r.grant, &r.created, &r.lastUsed, &r.idle, &r.abs, &r.cur, &r.prev, &r.rotated, &r.sealed}
}

// alive reports whether the row is a family (not a tombstone) live at t.
func (r *famRow) alive(t time.Time) bool { return r.cur.Valid && r.expires > ns(t) }

// family decodes a live family row.
func (s *Store) family(id string, r *famRow) (storage.RefreshFamily, error) {
	f := storage.RefreshFamily{
		ID:             id,
		CreatedAt:      fromNS(r.created.Int64),
		LastUsed:       fromNS(r.lastUsed.Int64),
		IdleExpiry:     fromNS(r.idle.Int64),
		AbsoluteExpiry: fromNS(r.abs.Int64),
	}
	err := s.decode("refresh family", r.grant, &f.Grant)
	return f, err
}

// CreateRefresh starts family f with token; see storage.Storage. The token
// must have the form "<f.ID>.<secret>". One statement creates the row, or
// replaces an expired family or tombstone; a live one stays.
func (s *Store) CreateRefresh(ctx context.Context, f storage.RefreshFamily, token string) error {
	if id, ok := familyOf(token); !ok || id != f.ID {
		return errWrongFamily
	}
	g, err := encode(f.Grant)
	if err != nil {
		return err
	}
	n, err := affected(s.w.ExecContext(ctx, createFamilySQL, createFamilyArgs(f, g, token, s.now())...))
	if err != nil {
		return s.unavailable("create refresh", err)
	}
	if n == 1 {
		return nil
	}
	var revoked bool
	err = s.w.QueryRowContext(ctx, `SELECT cur IS NULL FROM refresh_families WHERE id = $1`, f.ID).Scan(&revoked)
	switch {
	case err != nil && !noRows(err):
		return s.unavailable("create refresh", err)
	case revoked:
		return fmt.Errorf("%s: refresh family revoked: %w", s.d.name, storage.ErrNotFound)
	}
	return fmt.Errorf("%s: refresh family: %w", s.d.name, storage.ErrAlreadyExists)
}

// createFamilySQL creates a family's row, or replaces an expired family
// or tombstone (expires <= $10); see createFamilyArgs.
const createFamilySQL = `INSERT INTO refresh_families
	(id, expires, subject, grant_data, created_at, last_used, idle_expiry, abs_expiry, cur, gen)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0)
ON CONFLICT (id) DO UPDATE SET expires = excluded.expires, subject = excluded.subject,
	grant_data = excluded.grant_data, created_at = excluded.created_at, last_used = excluded.last_used,
	idle_expiry = excluded.idle_expiry, abs_expiry = excluded.abs_expiry, cur = excluded.cur, gen = 0,
	prev = NULL, rotated = NULL, sealed_next = NULL
WHERE refresh_families.expires <= $10`

// createFamilyArgs are createFamilySQL's arguments for family f, its
// grant's JSON g and first token, at now (the store's clock).
func createFamilyArgs(f storage.RefreshFamily, g []byte, token string, now time.Time) []any {
	return []any{f.ID, ns(f.Expiry()), f.Grant.Subject, g, ns(f.CreatedAt), ns(f.LastUsed), ns(f.IdleExpiry), ns(f.AbsoluteExpiry),
		storage.Hash(token), ns(now)}
}

// What a rotation decided.
const (
	rotNotFound = iota
	rotRotated
	rotRetry
	rotReused
	rotUnchecked // RefreshGrant: a current token whose family fails a check
)

// RotateRefresh replaces old with next atomically; see storage.Storage. When
// old is current, one conditional UPDATE rotates it, atomically with the
// epoch's tick (writeReturning). Otherwise the family's row is locked
// (SELECT … FOR UPDATE; on SQLite the write transaction holds the
// database) while reuse, a retry or nothing is decided, and a revocation
// ticks the epoch in the same transaction.
//
// Reuse detection in O(1): a family keeps only its current token's hash
// and a rotation count, never the tokens it rotated away, so its row stays
// the same size however long it lives. Every well-formed token of a live
// family that is not the current one is therefore reuse, and revokes the
// family: it is either a token rotated away, or a forgery by someone who
// knows the family id, which leaves the broker only as the first half of
// the family's tokens. Tokens whose secret is malformed are unknown, not
// reuse. The one exception is a retry: the token the last rotation
// replaced, within the window (storage.Retry), answered with the kept
// successor and nothing changed. The window is measured on the callers'
// clock (now), as the expiries are.
func (s *Store) RotateRefresh(ctx context.Context, old, next string, now time.Time, idle time.Duration, retry storage.Retry) (storage.RefreshFamily, []byte, error) {
	id, ok := familyOf(old)
	if !ok {
		return storage.RefreshFamily{}, nil, s.notFound("refresh token")
	}
	if nid, ok := familyOf(next); !ok || nid != id {
		return storage.RefreshFamily{}, nil, errWrongFamily
	}
	oldHash, nextHash := storage.Hash(old), storage.Hash(next)
	prev, rotated, successor := retryCols(oldHash, now, retry)
	// The usual case first: old is current, and one statement rotates it.
	clock := s.now()
	if now.After(clock) {
		clock = now // alive on the store's clock and on the caller's
	}
	var r famRow
	found, err := s.writeReturning(ctx, "rotate refresh", rotateCurrent,
		[]any{id, nextHash, ns(now), ns(now.Add(idle)), prev, rotated, successor, oldHash, ns(clock)},
		&r.grant, &r.created, &r.lastUsed, &r.idle, &r.abs)
	if err != nil {
		return storage.RefreshFamily{}, nil, err
	}
	if found {
		f, err := s.family(id, &r)
		switch {
		case err != nil:
			return storage.RefreshFamily{}, nil, err
		case s.lost(f.CreatedAt):
			return storage.RefreshFamily{}, nil, s.notFound("refresh family from before storage lost state")
		}
		return f, nil, nil
	}
	// Otherwise decide, with the row locked, between reuse, a retry and
	// nothing to rotate.
	var (
		out    int
		fam    storage.RefreshFamily
		sealed []byte
	)
	err = s.write(ctx, "rotate refresh", func(tx *sql.Tx) (bool, error) {
		var security bool
		var err error
		out, fam, sealed, security, err = s.rotateLocked(ctx, tx, id, oldHash, nextHash, now, idle, retry, nil)
		return security, err
	})
	if err != nil {
		return storage.RefreshFamily{}, nil, err
	}
	return s.rotation(id, out, fam, sealed)
}

// retryCols are the prev, rotated and sealed_next columns of a rotation of
// the token whose hash is oldHash at now: NULL when it keeps no retry.
func retryCols(oldHash string, now time.Time, retry storage.Retry) (prev, rotated, successor any) {
	if retry.Window > 0 && len(retry.SealedNext) > 0 {
		return oldHash, ns(now), retry.SealedNext
	}
	return nil, nil, nil
}

// rotateLocked decides, in tx with the family's row locked, between
// rotating the current token oldHash to nextHash, a retry, reuse (the
// family revoked) and nothing to rotate; see RotateRefresh. With meets
// set, a current token whose family's grant fails it is not rotated
// (rotUnchecked, the family returned, nothing changed). It reports whether
// it changed security state (the epoch ticks with it); its errors are
// database errors and corrupt rows.
func (s *Store) rotateLocked(ctx context.Context, tx *sql.Tx, id, oldHash, nextHash string, now time.Time, idle time.Duration,
	retry storage.Retry, meets func(storage.Grant) bool) (out int, fam storage.RefreshFamily, sealed []byte, security bool, err error) {
	var r famRow
	err = tx.QueryRowContext(ctx, `SELECT `+familyCols+` FROM refresh_families WHERE id = $1`+s.d.forUpdate, id).Scan(r.dest()...)
	if noRows(err) {
		return rotNotFound, fam, nil, false, nil
	}
	if err != nil {
		return rotNotFound, fam, nil, false, err
	}
	if !r.alive(s.now()) || !r.alive(now) {
		return rotNotFound, fam, nil, false, nil
	}
	f, err := s.family(id, &r)
	if err != nil || s.lost(f.CreatedAt) {
		return rotNotFound, fam, nil, false, err
	}
	if r.cur.String != oldHash {
		if retry.Window > 0 && r.prev.Valid && r.prev.String == oldHash && len(r.sealed) > 0 &&
			now.Before(fromNS(r.rotated.Int64).Add(retry.Window)) {
			return rotRetry, f, r.sealed, false, nil
		}
		_, err := tx.ExecContext(ctx, `UPDATE refresh_families SET expires = abs_expiry, `+tombstone+` WHERE id = $1`, id)
		return rotReused, fam, nil, true, err
	}
	if meets != nil && !meets(f.Grant) {
		return rotUnchecked, f, nil, false, nil
	}
	ie := now.Add(idle)
	if ie.After(f.AbsoluteExpiry) {
		ie = f.AbsoluteExpiry
	}
	prev, rotated, successor := retryCols(oldHash, now, retry)
	_, err = tx.ExecContext(ctx, `UPDATE refresh_families SET cur = $2, gen = gen + 1, last_used = $3,
	idle_expiry = $4, expires = $4, prev = $5, rotated = $6, sealed_next = $7 WHERE id = $1`,
		id, nextHash, ns(now), ns(ie), prev, rotated, successor)
	f.LastUsed, f.IdleExpiry = fromNS(ns(now)), fromNS(ns(ie))
	return rotRotated, f, nil, true, err
}

// rotation answers what rotateLocked decided, once committed.
func (s *Store) rotation(id string, out int, fam storage.RefreshFamily, sealed []byte) (storage.RefreshFamily, []byte, error) {
	switch {
	case out == rotReused:
		return storage.RefreshFamily{}, nil, fmt.Errorf("%s: family %s revoked: %w", s.d.name, id, storage.ErrReused)
	case out == rotNotFound || s.lost(fam.CreatedAt): // the tick may have found a rollback
		return storage.RefreshFamily{}, nil, s.notFound("refresh token")
	case out == rotRetry:
		return fam, sealed, fmt.Errorf("%s: family %s: %w", s.d.name, id, storage.ErrRetry)
	case out == rotUnchecked:
		return fam, nil, fmt.Errorf("%s: family %s: %w", s.d.name, id, storage.ErrUnchecked)
	}
	return fam, nil, nil
}

// rotateCurrent rotates a family whose current token is $8 and that is
// alive at $9: $2 the next token's hash, $3 now, $4 the idle expiry before
// the absolute cap, $5 $6 $7 what a retry needs (NULL for none).
const rotateCurrent = `UPDATE refresh_families SET cur = $2, gen = gen + 1, last_used = $3,
	idle_expiry = CASE WHEN $4 < abs_expiry THEN $4 ELSE abs_expiry END,
	expires = CASE WHEN $4 < abs_expiry THEN $4 ELSE abs_expiry END,
	prev = $5, rotated = $6, sealed_next = $7
WHERE id = $1 AND cur = $8 AND expires > $9
RETURNING grant_data, created_at, last_used, idle_expiry, abs_expiry`

// UpdateRefreshGrant replaces the grant of the family whose current token
// is token; see storage.Storage.
func (s *Store) UpdateRefreshGrant(ctx context.Context, token string, g storage.Grant) error {
	id, ok := familyOf(token)
	if !ok {
		return s.notFound("refresh token")
	}
	data, err := encode(g)
	if err != nil {
		return err
	}
	found := false
	err = s.write(ctx, "update refresh grant", func(tx *sql.Tx) (bool, error) {
		found = false
		var r famRow
		err := tx.QueryRowContext(ctx, `SELECT `+familyCols+` FROM refresh_families WHERE id = $1`+s.d.forUpdate, id).Scan(r.dest()...)
		if noRows(err) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if !r.alive(s.now()) || r.cur.String != storage.Hash(token) || s.lost(fromNS(r.created.Int64)) {
			return false, nil
		}
		found = true
		_, err = tx.ExecContext(ctx, `UPDATE refresh_families SET grant_data = $2 WHERE id = $1`, id, data)
		return false, err
	})
	switch {
	case err != nil:
		return err
	case !found:
		return s.notFound("refresh token")
	}
	return nil
}

// GetRefresh returns the family whose current token is token.
func (s *Store) GetRefresh(ctx context.Context, token string) (storage.RefreshFamily, error) {
	id, ok := familyOf(token)
	if !ok {
		return storage.RefreshFamily{}, s.notFound("refresh token")
	}
	var r famRow
	err := s.r.QueryRowContext(ctx, `SELECT `+familyCols+` FROM refresh_families WHERE id = $1 AND cur = $2`, id, storage.Hash(token)).Scan(r.dest()...)
	switch {
	case noRows(err):
		return storage.RefreshFamily{}, s.notFound("refresh token")
	case err != nil:
		return storage.RefreshFamily{}, s.unavailable("get refresh", err)
	case !r.alive(s.now()):
		return storage.RefreshFamily{}, s.notFound("refresh token")
	}
	f, err := s.family(id, &r)
	if err != nil {
		return storage.RefreshFamily{}, err
	}
	if s.lost(f.CreatedAt) {
		return storage.RefreshFamily{}, s.notFound("refresh family from before storage lost state")
	}
	return f, nil
}

// RevokeFamily turns the family into a tombstone until `until` (or keeps
// a later tombstone), in one statement, and ticks the epoch with it.
func (s *Store) RevokeFamily(ctx context.Context, familyID string, until time.Time) error {
	if familyID == "" {
		return nil
	}
	var one int
	_, err := s.writeReturning(ctx, "revoke family", `INSERT INTO refresh_families (id, expires) VALUES ($1, $2)
ON CONFLICT (id) DO UPDATE SET expires = CASE
		WHEN refresh_families.cur IS NULL AND refresh_families.expires > excluded.expires THEN refresh_families.expires
		ELSE excluded.expires END,
	`+tombstone+`
RETURNING 1`, []any{familyID, ns(until)}, &one)
	return err
}

// RevokeSubject revokes the subject's families (tombstones until their
// absolute expiry) and deletes its sessions, in one transaction, counting
// those that were live.
func (s *Store) RevokeSubject(ctx context.Context, subject string) (families, sessions int, err error) {
	err = s.write(ctx, "revoke subject", func(tx *sql.Tx) (bool, error) {
		families, sessions = 0, 0
		now := ns(s.now())
		revoke := `UPDATE refresh_families SET expires = abs_expiry, ` + tombstone + ` WHERE subject = $1 AND cur IS NOT NULL`
		n, err := affected(tx.ExecContext(ctx, revoke+` AND expires > $2`, subject, now))
		if err != nil {
			return false, err
		}
		families = int(n)
		if _, err := tx.ExecContext(ctx, revoke, subject); err != nil { // the expired ones
			return false, err
		}
		if n, err = affected(tx.ExecContext(ctx, `DELETE FROM sessions WHERE subject = $1 AND expiry > $2`, subject, now)); err != nil {
			return false, err
		}
		sessions = int(n)
		_, err = tx.ExecContext(ctx, `DELETE FROM sessions WHERE subject = $1`, subject)
		return true, err
	})
	if err != nil {
		return 0, 0, err
	}
	return families, sessions, nil
}
