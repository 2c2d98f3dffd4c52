package keys

import (
	"context"
	"fmt"
	"time"
)

// Rotation is what Rotate did.
type Rotation struct {
	// Rotated is false when another replica rotated the set since this
	// one last loaded it, so nothing was rotated.
	Rotated bool
	// Generation is the key set's rotation count after the call: the one
	// this rotation made, or the other replica's.
	Generation int64
}

// Rotate rotates every configured algorithm under the lease, unless
// another replica rotated since this Manager last loaded the set (its default algorithm's Active key is no
// longer the one in memory), so two replicas asked within the sync
// interval make one rotation and the second learns the generation the
// first wrote. When another replica holds the lease it waits a little for
// that replica's write; ErrBusy means it saw none. While the Manager
// refuses the stored set (Readiness) it returns that reason, which matches
// ErrNotReady.
func (m *Manager) Rotate(ctx context.Context) (Rotation, error) {
	if m.static {
		return Rotation{}, ErrStatic
	}
	if err := m.Readiness(); err != nil {
		return Rotation{}, notReady(err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	cur := m.state.Load()
	if cur == nil || cur.set == nil || cur.set.Algs[m.algs[0]] == nil {
		return Rotation{}, ErrNotReady
	}
	active := cur.set.Algs[m.algs[0]].Active.KID
	rotatedElsewhere := func(s *keySet) bool {
		as := s.Algs[m.algs[0]]
		return as != nil && as.Active.KID != active
	}
	deadline := time.Now().Add(startWait)
	for {
		rotated := false
		done, err := m.writeLocked(ctx, false, func(s *keySet, now time.Time) (bool, error) {
			changed, err := m.ensure(s, now)
			if err != nil || rotatedElsewhere(s) {
				return changed, err
			}
			for _, a := range m.algs {
				if err := m.rotate(s, a, now); err != nil {
					return false, err
				}
			}
			s.Generation++
			rotated = true
			return true, nil
		})
		if m.refused(err) {
			// The stored set changed under this replica and it cannot
			// use it: nothing was rotated.
			return Rotation{}, notReady(err)
		}
		if err != nil {
			return Rotation{}, err
		}
		if done {
			res := Rotation{Rotated: rotated}
			if st := m.state.Load(); st != nil && st.set != nil {
				res.Generation = st.set.Generation
			}
			return res, nil
		}
		// The lease is held elsewhere or the compare-and-swap lost: did
		// that replica rotate?
		set, _, err := m.fetch(ctx)
		if err != nil {
			return Rotation{}, err
		}
		if set != nil && rotatedElsewhere(set) {
			return Rotation{Generation: set.Generation}, nil
		}
		if time.Now().After(deadline) {
			return Rotation{}, ErrBusy
		}
		select {
		case <-ctx.Done():
			return Rotation{}, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// RotateNow is Rotate for callers that only need to know whether this call
// rotated: nil when it did, ErrAlreadyRotated (with the generation that
// other rotation made) when another replica rotated since this Manager
// last loaded the set and nothing more was rotated, ErrBusy when another
// replica held the lease for the whole wait, ErrStatic for static keys and
// an error matching ErrNotReady while the Manager refuses the stored set.
//
// The key that starts signing is the published Next key, so relying
// parties that fetched the JWKS since the previous rotation already have
// it; a second RotateNow within MaxAge activates a key they may not have
// fetched yet. Use it for a suspected compromise, not routinely.
func (m *Manager) RotateNow(ctx context.Context) error {
	r, err := m.Rotate(ctx)
	if err != nil {
		return err
	}
	if !r.Rotated {
		return fmt.Errorf("%w (generation %d)", ErrAlreadyRotated, r.Generation)
	}
	return nil
}

// ensure gives every configured algorithm missing from set an Active and a
// Next key, drops retired keys past their RetireAt and, when a KEK is
// configured, seals private keys that were stored in clear.
func (m *Manager) ensure(set *keySet, now time.Time) (bool, error) {
	changed := prune(set, now)
	if m.sealer.aead != nil {
		for _, as := range set.Algs {
			for _, sk := range []*storedKey{&as.Active, &as.Next} {
				if sk.Seal != sealNone {
					continue
				}
				k, err := m.sealer.decode(*sk)
				if err != nil {
					return false, err
				}
				if *sk, err = m.sealer.encode(k, sk.Created); err != nil {
					return false, err
				}
				changed = true
			}
		}
	}
	for _, a := range m.algs {
		if set.Algs[a] != nil {
			continue
		}
		active, err := m.fresh(a, now)
		if err != nil {
			return false, err
		}
		next, err := m.fresh(a, now)
		if err != nil {
			return false, err
		}
		set.Algs[a] = &algSet{Active: active, Next: next, RotatedAt: now}
		m.log.Info("signing keys created", "alg", a, "active_kid", active.KID, "next_kid", next.KID)
		changed = true
	}
	return changed, nil
}

// fresh generates and encodes a new key for alg.
func (m *Manager) fresh(alg string, now time.Time) (storedKey, error) {
	k, err := newKey(alg)
	if err != nil {
		return storedKey{}, err
	}
	return m.sealer.encode(k, now)
}

// prune drops retired keys whose RetireAt has passed.
func prune(set *keySet, now time.Time) bool {
	changed := false
	for _, as := range set.Algs {
		kept := as.Retired[:0]
		for _, r := range as.Retired {
			if now.Before(r.RetireAt) {
				kept = append(kept, r)
			}
		}
		changed = changed || len(kept) != len(as.Retired)
		as.Retired = kept
	}
	return changed
}

// rotate moves Next to Active, retires the old Active until now+m.keep
// and generates a fresh Next for alg.
func (m *Manager) rotate(set *keySet, alg string, now time.Time) error {
	as := set.Algs[alg]
	next, err := m.fresh(alg, now)
	if err != nil {
		return err
	}
	old := as.Active
	old.Seal, old.Private, old.RetireAt = "", nil, now.Add(m.keep)
	as.Retired = append(as.Retired, old)
	as.Active, as.Next, as.RotatedAt = as.Next, next, now
	m.log.Info("signing key rotated", "alg", alg, "active_kid", as.Active.KID, "next_kid", next.KID,
		"retired_kid", old.KID, "retire_at", old.RetireAt)
	return nil
}

// due reports whether alg's Active key has signed for a rotation period.
func (m *Manager) due(set *keySet, alg string, now time.Time) bool {
	as := set.Algs[alg]
	return as == nil || !now.Before(as.RotatedAt.Add(m.rotation))
}
