package memory

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/fedbroker/fedbroker/broker/storage"
)

var (
	errToken       = fmt.Errorf("memory: refresh token: %w", storage.ErrNotFound)
	errWrongFamily = errors.New("memory: refresh token does not belong to the family")
)

func (f *famEntry) alive(now time.Time) bool {
	return live(now, f.idleExpiry) && live(now, f.absoluteExpiry)
}

func (f *famEntry) family() (storage.RefreshFamily, error) {
	rec, err := cloneFamily(f.val)
	rec.LastUsed, rec.IdleExpiry = f.lastUsed, f.idleExpiry
	return rec, err
}

// CreateRefresh starts family f with token; see storage.Storage. The token
// must have the form "<f.ID>.<secret>".
func (s *Store) CreateRefresh(ctx context.Context, f storage.RefreshFamily, token string) error {
	if id, ok := familyOf(token); !ok || id != f.ID {
		return errWrongFamily
	}
	v, err := cloneFamily(f)
	if err != nil {
		return err
	}
	now, err := s.lock()
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	if until, ok := s.tombstones[f.ID]; ok && live(now, until) {
		return fmt.Errorf("memory: refresh family revoked: %w", storage.ErrNotFound)
	}
	if old, ok := s.families[f.ID]; ok && old.alive(now) {
		return fmt.Errorf("memory: refresh family: %w", storage.ErrAlreadyExists)
	}
	s.families[f.ID] = &famEntry{
		val:            v,
		subject:        f.Grant.Subject,
		current:        storage.Hash(token),
		lastUsed:       f.LastUsed,
		idleExpiry:     f.IdleExpiry,
		absoluteExpiry: f.AbsoluteExpiry,
	}
	return nil
}

// RotateRefresh replaces old with next atomically; see storage.Storage.
//
// Reuse detection in O(1): a family keeps only its current token's hash
// and a rotation count, never the tokens it rotated away, so its state
// stays the same size however long it lives (one family once held 12,247 rotated hashes for a
// day). RotateRefresh therefore treats every well-formed token of a live
// family that is not the current one as reuse, and revokes the family: it
// is either a token rotated away, or a forgery by someone who knows the
// family id. The family id is the first half of the family's tokens and
// leaves the broker nowhere else (access tokens carry only a hash of it,
// tokens.FamilyRef), so knowing it means having held one of the family's
// tokens: revoking then is what reuse detection is for. A forger without
// the id cannot name a live family. Tokens whose secret is malformed (empty
// or containing a '.') are unknown, not reuse. The one exception is a
// retry: the token the last rotation replaced, within the window (see
// storage.Retry), answered under the same lock with the kept successor.
func (s *Store) RotateRefresh(ctx context.Context, old, next string, now time.Time, idle time.Duration, retry storage.Retry) (storage.RefreshFamily, []byte, error) {
	id, ok := familyOf(old)
	if !ok {
		return storage.RefreshFamily{}, nil, errToken
	}
	if nid, ok := familyOf(next); !ok || nid != id {
		return storage.RefreshFamily{}, nil, errWrongFamily
	}
	clock, err := s.lock()
	if err != nil {
		return storage.RefreshFamily{}, nil, err
	}
	defer s.mu.Unlock()
	return s.rotate(clock, id, old, next, now, idle, retry, nil)
}

// rotate is RotateRefresh with s.mu held; with meets set, a current token
// whose family's grant does not meet it is not rotated (ErrUnchecked).
func (s *Store) rotate(clock time.Time, id, old, next string, now time.Time, idle time.Duration, retry storage.Retry, meets func(storage.Grant) bool) (storage.RefreshFamily, []byte, error) {
	f, ok := s.families[id]
	if !ok || !f.alive(clock) || !f.alive(now) {
		return storage.RefreshFamily{}, nil, errToken
	}
	if f.current != storage.Hash(old) {
		if f.retry.answers(storage.Hash(old), now, retry.Window) {
			fam, err := f.family()
			if err != nil {
				return storage.RefreshFamily{}, nil, err
			}
			return fam, bytes.Clone(f.retry.sealedNext), fmt.Errorf("memory: family %s: %w", id, storage.ErrRetry)
		}
		// Any other token of a live family than the current one is reuse.
		delete(s.families, id)
		s.tombstones[id] = f.absoluteExpiry
		return storage.RefreshFamily{}, nil, fmt.Errorf("memory: family %s revoked: %w", id, storage.ErrReused)
	}
	if meets != nil {
		fam, err := f.family()
		if err != nil {
			return storage.RefreshFamily{}, nil, err
		}
		if !meets(fam.Grant) {
			return fam, nil, fmt.Errorf("memory: family %s: %w", id, storage.ErrUnchecked)
		}
	}
	f.retry = retryState{}
	if retry.Window > 0 && len(retry.SealedNext) > 0 {
		f.retry = retryState{previous: f.current, rotated: now, sealedNext: bytes.Clone(retry.SealedNext)}
	}
	f.current = storage.Hash(next)
	f.generation++
	f.lastUsed = now
	f.idleExpiry = now.Add(idle)
	if f.idleExpiry.After(f.absoluteExpiry) {
		f.idleExpiry = f.absoluteExpiry
	}
	fam, err := f.family()
	return fam, nil, err
}

// retryState is what a family keeps of its last rotation so that the
// token it replaced can be answered again (storage.Retry): one hash, one
// time and one sealed token, replaced at every rotation.
type retryState struct {
	previous   string    // Hash of the token the last rotation replaced
	rotated    time.Time // when (the caller's now)
	sealedNext []byte    // the successor, sealed by the broker
}

// answers reports whether the token hashed h, presented at now, is a retry
// of the last rotation within window.
func (r retryState) answers(h string, now time.Time, window time.Duration) bool {
	return window > 0 && r.previous != "" && r.previous == h && now.Before(r.rotated.Add(window))
}

// UpdateRefreshGrant replaces the grant of the family whose current token
// is token; see storage.Storage.
func (s *Store) UpdateRefreshGrant(ctx context.Context, token string, g storage.Grant) error {
	id, ok := familyOf(token)
	if !ok {
		return errToken
	}
	now, err := s.lock()
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	f, ok := s.families[id]
	if !ok || !f.alive(now) || f.current != storage.Hash(token) {
		return errToken
	}
	fam, err := f.family()
	if err != nil {
		return err
	}
	fam.Grant = g
	v, err := cloneFamily(fam)
	if err != nil {
		return err
	}
	f.val = v
	return nil
}

// GetRefresh returns the family whose current token is token.
func (s *Store) GetRefresh(ctx context.Context, token string) (storage.RefreshFamily, error) {
	id, ok := familyOf(token)
	if !ok {
		return storage.RefreshFamily{}, errToken
	}
	now, err := s.lock()
	if err != nil {
		return storage.RefreshFamily{}, err
	}
	defer s.mu.Unlock()
	f, ok := s.families[id]
	if !ok || !f.alive(now) || f.current != storage.Hash(token) {
		return storage.RefreshFamily{}, errToken
	}
	return f.family()
}

// RevokeFamily deletes the family and keeps a tombstone until `until`.
func (s *Store) RevokeFamily(ctx context.Context, familyID string, until time.Time) error {
	if _, err := s.lock(); err != nil {
		return err
	}
	defer s.mu.Unlock()
	delete(s.families, familyID)
	if t, ok := s.tombstones[familyID]; !ok || until.After(t) {
		s.tombstones[familyID] = until
	}
	return nil
}

// RevokeSubject revokes the subject's families and deletes its sessions.
func (s *Store) RevokeSubject(ctx context.Context, subject string) (families, sessions int, err error) {
	now, err := s.lock()
	if err != nil {
		return 0, 0, err
	}
	defer s.mu.Unlock()
	for id, f := range s.families {
		if f.subject != subject {
			continue
		}
		if f.alive(now) {
			families++
		}
		delete(s.families, id)
		if t, ok := s.tombstones[id]; !ok || f.absoluteExpiry.After(t) {
			s.tombstones[id] = f.absoluteExpiry
		}
	}
	for h, r := range s.sessions {
		if r.subject != subject {
			continue
		}
		if live(now, r.expiry) {
			sessions++
		}
		delete(s.sessions, h)
	}
	return families, sessions, nil
}
