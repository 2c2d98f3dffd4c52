package redis

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/fedbroker/fedbroker/broker/storage"
)

var errWrongFamily = errors.New("redis: refresh token does not belong to the family")

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

// ns is t as 20-digit zero-padded Unix nanoseconds, clamped to what int64
// holds, for comparison as strings inside scripts.
func ns(t time.Time) string {
	var n int64
	switch {
	case t.Before(time.Unix(0, 0)):
		n = 0
	case t.After(time.Unix(0, math.MaxInt64)):
		n = math.MaxInt64
	default:
		n = t.UnixNano()
	}
	return fmt.Sprintf("%020d", n)
}

// CreateRefresh starts family f with token; see storage.Storage. The token
// must have the form "<f.ID>.<secret>".
func (s *Store) CreateRefresh(ctx context.Context, f storage.RefreshFamily, token string) error {
	if id, ok := familyOf(token); !ok || id != f.ID {
		return errWrongFamily
	}
	rec, err := encode(f)
	if err != nil {
		return err
	}
	now := s.now()
	exp := f.Expiry()
	// Index first: a stale index entry is harmless, a missing one would let
	// RevokeSubject miss the family.
	if err := s.indexAdd(ctx, s.subjFamKey(f.Grant.Subject), f.ID, f.AbsoluteExpiry, now); err != nil {
		return err
	}
	n, err := createRefreshScript.Run(ctx, s.c, s.famKeys(f.ID),
		rec, storage.Hash(token), ns(f.IdleExpiry), ns(f.AbsoluteExpiry), ms(f.AbsoluteExpiry), ms(exp)).Int()
	switch {
	case err != nil:
		return unavailable("create refresh", err)
	case n == -1:
		return fmt.Errorf("redis: refresh family revoked: %w", storage.ErrNotFound)
	case n == 0:
		return fmt.Errorf("redis: refresh family: %w", storage.ErrAlreadyExists)
	}
	return nil
}

// RotateRefresh replaces old with next atomically; see storage.Storage.
//
// Reuse detection in O(1): a family keeps only its current token's hash
// and a rotation count, never the tokens it rotated away, so its state
// stays the same size however long it lives (one family once held 12,247
// rotated hashes for a day). Every well-formed token of a live family that
// is not the current one is therefore reuse, and revokes the family: it is
// either a token rotated away, or a forgery by someone who knows the family
// id. The family id is the first half of the family's tokens and leaves the
// broker nowhere else (access tokens carry only a hash of it,
// tokens.FamilyRef), so knowing it means having held one of the family's
// tokens: revoking then is what reuse detection is for. A forger without
// the id cannot name a live family. Tokens whose secret is malformed (empty
// or containing a '.') are unknown, not reuse. The one exception is a
// retry: the token the last rotation replaced, within the window (see
// storage.Retry), answered in the same script with the kept successor.
// The window is measured on the callers' clock (now), as the expiries are.
func (s *Store) RotateRefresh(ctx context.Context, old, next string, now time.Time, idle time.Duration, retry storage.Retry) (storage.RefreshFamily, []byte, error) {
	id, ok := familyOf(old)
	if !ok {
		return storage.RefreshFamily{}, nil, notFound("refresh token")
	}
	if nid, ok := familyOf(next); !ok || nid != id {
		return storage.RefreshFamily{}, nil, errWrongFamily
	}
	ie := now.Add(idle)
	var sealed, cutoff string
	if retry.Window > 0 {
		sealed, cutoff = string(retry.SealedNext), ns(now.Add(-retry.Window))
	}
	res, err := s.scriptThenTick(ctx, rotateRefreshScript, s.famKeys(id),
		storage.Hash(old), storage.Hash(next), ns(now),
		now.Format(time.RFC3339Nano), ie.Format(time.RFC3339Nano), ns(ie), ms(ie), sealed, cutoff).Slice()
	if err != nil {
		return storage.RefreshFamily{}, nil, unavailable("rotate refresh", err)
	}
	return s.rotated(id, res)
}

// rotated reads the answer of rotateRefreshScript or refreshGrantScript
// for family id: {1, rec, last used, idle expiry} rotated; {2, rec, last
// used, idle expiry, sealed successor} a retry within the window; {3, rec,
// last used, idle expiry} unchecked (refreshGrantScript); {-2} reused, the
// family revoked; {-3} the proof seen (refreshGrantScript); anything else
// not found.
func (s *Store) rotated(id string, res []any) (storage.RefreshFamily, []byte, error) {
	code, _ := res[0].(int64)
	switch code {
	case -3:
		return storage.RefreshFamily{}, nil, fmt.Errorf("redis: proof: %w", storage.ErrSeen)
	case -2:
		return storage.RefreshFamily{}, nil, fmt.Errorf("redis: family %s revoked: %w", id, storage.ErrReused)
	case 1, 2, 3:
	default:
		return storage.RefreshFamily{}, nil, notFound("refresh token")
	}
	rec, _ := res[1].(string)
	lu, _ := res[2].(string)
	ies, _ := res[3].(string)
	fam, err := s.family(rec, lu, ies)
	if err != nil {
		return fam, nil, err
	}
	if s.lost(fam.CreatedAt) {
		return storage.RefreshFamily{}, nil, notFound("refresh family from before storage lost state")
	}
	switch code {
	case 1:
		return fam, nil, nil
	case 3:
		return fam, nil, fmt.Errorf("redis: family %s: %w", id, storage.ErrUnchecked)
	}
	nx, _ := res[4].(string)
	return fam, []byte(nx), fmt.Errorf("redis: family %s: %w", id, storage.ErrRetry)
}

// family decodes a stored family and applies the rotated LastUsed and
// IdleExpiry ("" for unchanged; an empty ie after a rotation means capped at
// the absolute expiry).
func (s *Store) family(rec, lu, ie string) (storage.RefreshFamily, error) {
	var f storage.RefreshFamily
	if err := s.decode("refresh family", rec, &f); err != nil {
		return f, err
	}
	if lu == "" {
		return f, nil
	}
	var err error
	if f.LastUsed, err = time.Parse(time.RFC3339Nano, lu); err != nil {
		return storage.RefreshFamily{}, fmt.Errorf("redis: corrupt refresh family: %v: %w", err, storage.ErrUnavailable)
	}
	if ie == "" {
		f.IdleExpiry = f.AbsoluteExpiry
	} else if f.IdleExpiry, err = time.Parse(time.RFC3339Nano, ie); err != nil {
		return storage.RefreshFamily{}, fmt.Errorf("redis: corrupt refresh family: %v: %w", err, storage.ErrUnavailable)
	}
	return f, nil
}

// UpdateRefreshGrant replaces the grant of the family whose current token
// is token; see storage.Storage.
func (s *Store) UpdateRefreshGrant(ctx context.Context, token string, g storage.Grant) error {
	f, err := s.GetRefresh(ctx, token)
	if err != nil {
		return err
	}
	f.Grant = g
	rec, err := encode(f)
	if err != nil {
		return err
	}
	n, err := updateRefreshGrantScript.Run(ctx, s.c, s.famKeys(f.ID)[:1], storage.Hash(token), rec).Int()
	if err != nil {
		return unavailable("update refresh grant", err)
	}
	if n == 0 {
		return notFound("refresh token")
	}
	return nil
}

// GetRefresh returns the family whose current token is token.
func (s *Store) GetRefresh(ctx context.Context, token string) (storage.RefreshFamily, error) {
	id, ok := familyOf(token)
	if !ok {
		return storage.RefreshFamily{}, notFound("refresh token")
	}
	v, err := s.c.HMGet(ctx, s.famKeys(id)[0], "rec", "cur", "lu", "ie").Result()
	if err != nil {
		return storage.RefreshFamily{}, unavailable("get refresh", err)
	}
	rec, ok := v[0].(string)
	if cur, _ := v[1].(string); !ok || cur != storage.Hash(token) {
		return storage.RefreshFamily{}, notFound("refresh token")
	}
	lu, _ := v[2].(string)
	ie, _ := v[3].(string)
	f, err := s.family(rec, lu, ie)
	if err != nil {
		return f, err
	}
	if now := s.now(); !now.Before(f.IdleExpiry) || !now.Before(f.AbsoluteExpiry) || s.lost(f.CreatedAt) {
		return storage.RefreshFamily{}, notFound("refresh token")
	}
	return f, nil
}

// RevokeFamily deletes the family and keeps a tombstone until `until`.
func (s *Store) RevokeFamily(ctx context.Context, familyID string, until time.Time) error {
	if familyID == "" {
		return nil
	}
	err := s.scriptThenTick(ctx, revokeFamilyScript, s.famKeys(familyID), ms(until), s.now().UnixMilli()).Err()
	if err != nil {
		return unavailable("revoke family", err)
	}
	return nil
}

// RevokeSubject revokes the subject's families and deletes its sessions,
// through the subject's indexes. Each family is revoked atomically; the
// whole is not one transaction.
func (s *Store) RevokeSubject(ctx context.Context, subject string) (families, sessions int, err error) {
	famIdx, sessIdx := s.subjFamKey(subject), s.subjSessKey(subject)
	ids, err := s.c.ZRange(ctx, famIdx, 0, -1).Result()
	if err != nil {
		return 0, 0, unavailable("revoke subject", err)
	}
	for _, id := range ids {
		n, err := revokeFamilyScript.alone.Run(ctx, s.c, s.famKeys(id), "", s.now().UnixMilli()).Int()
		if err != nil {
			return families, sessions, unavailable("revoke subject", err)
		}
		families += n
		if err := s.c.ZRem(ctx, famIdx, id).Err(); err != nil {
			return families, sessions, unavailable("revoke subject", err)
		}
	}
	hashes, err := s.c.ZRange(ctx, sessIdx, 0, -1).Result()
	if err != nil {
		return families, sessions, unavailable("revoke subject", err)
	}
	for _, h := range hashes {
		n, err := s.c.Del(ctx, s.sessKey(h)).Result()
		if err != nil {
			return families, sessions, unavailable("revoke subject", err)
		}
		sessions += int(n)
		if err := s.c.ZRem(ctx, sessIdx, h).Err(); err != nil {
			return families, sessions, unavailable("revoke subject", err)
		}
	}
	if err := s.tick(ctx, s.c); err != nil {
		s.log.Debug("storage epoch tick failed", "err", err)
	}
	return families, sessions, nil
}
