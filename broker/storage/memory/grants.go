package memory

import (
	"context"
	"fmt"
	"time"

	"github.com/fedbroker/fedbroker/broker/storage"
)

var _ storage.GrantStore = (*Store)(nil)

// RedeemCode consumes a code and starts its family under one lock; see
// storage.GrantStore.
func (s *Store) RedeemCode(ctx context.Context, code string, r storage.Redemption) (storage.Redeemed, error) {
	if r.RefreshToken != "" {
		if id, ok := familyOf(r.RefreshToken); !ok || id != r.FamilyID {
			return storage.Redeemed{}, errWrongFamily
		}
	}
	now, err := s.lock()
	if err != nil {
		return storage.Redeemed{}, err
	}
	defer s.mu.Unlock()
	if !s.markLocked(now, r.Proof) {
		return storage.Redeemed{}, fmt.Errorf("memory: proof: %w", storage.ErrSeen)
	}
	c, ok := s.codes[storage.Hash(code)]
	if !ok || !live(now, c.expiry) {
		return storage.Redeemed{}, fmt.Errorf("memory: code: %w", storage.ErrNotFound)
	}
	rec, err := c.code()
	if err != nil {
		return storage.Redeemed{}, err
	}
	if c.used {
		return storage.Redeemed{Code: rec}, fmt.Errorf("memory: code: %w", storage.ErrAlreadyUsed)
	}
	c.used, c.familyID, rec.FamilyID = true, r.FamilyID, r.FamilyID
	out := storage.Redeemed{Code: rec}
	if sid := rec.Grant.SessionID; sid != "" {
		if until, ok := s.seen[seenKey{r.EndedSessions, sid}]; ok && live(now, until) {
			out.SessionEnded = true
			return out, nil
		}
	}
	absolute, ok := r.StartsFamily(rec.Grant)
	if !ok {
		return out, nil
	}
	if until, ok := s.tombstones[r.FamilyID]; ok && live(now, until) {
		return out, nil
	}
	if old, ok := s.families[r.FamilyID]; ok && old.alive(now) {
		return out, nil
	}
	fam := r.NewFamily(rec.Grant, absolute)
	v, err := cloneFamily(fam) // fam goes to the caller, with rec's maps
	if err != nil {
		return out, err
	}
	s.families[fam.ID] = &famEntry{
		val:            v,
		subject:        fam.Grant.Subject,
		current:        storage.Hash(r.RefreshToken),
		lastUsed:       fam.LastUsed,
		idleExpiry:     fam.IdleExpiry,
		absoluteExpiry: fam.AbsoluteExpiry,
	}
	out.Family = &fam
	return out, nil
}

// RefreshGrant checks and rotates a refresh token under one lock; see
// storage.GrantStore.
func (s *Store) RefreshGrant(ctx context.Context, r storage.Rotation) (storage.RefreshFamily, []byte, error) {
	id, ok := familyOf(r.Old)
	if nid, nok := familyOf(r.Next); ok && (!nok || nid != id) {
		return storage.RefreshFamily{}, nil, errWrongFamily
	}
	clock, err := s.lock()
	if err != nil {
		return storage.RefreshFamily{}, nil, err
	}
	defer s.mu.Unlock()
	if !s.markLocked(clock, r.Proof) {
		return storage.RefreshFamily{}, nil, fmt.Errorf("memory: proof: %w", storage.ErrSeen)
	}
	if !ok {
		return storage.RefreshFamily{}, nil, errToken
	}
	return s.rotate(clock, id, r.Old, r.Next, r.Now, r.Idle, r.Retry, r.Meets)
}

// markLocked records m as MarkSeen does (nothing when m has no id), with
// s.mu held; false when it was recorded already.
func (s *Store) markLocked(now time.Time, m storage.Mark) bool {
	if m.ID == "" {
		return true
	}
	k := seenKey{m.Namespace, m.ID}
	if old, ok := s.seen[k]; ok && live(now, old) {
		return false
	}
	s.seen[k] = m.Until
	return true
}
