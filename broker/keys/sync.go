package keys

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/fedbroker/fedbroker/broker/storage"
)

// fetch reads the stored key set; a nil set means none is stored.
func (m *Manager) fetch(ctx context.Context) (*keySet, int64, error) {
	data, version, err := m.store.GetKeys(ctx)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("keys: load key set: %w", err)
	}
	set, err := decodeSet(data)
	if err != nil {
		return nil, 0, err
	}
	return set, version, nil
}

// install decodes set and makes it the snapshot in use.
func (m *Manager) install(set *keySet, version int64) error {
	st, err := m.storedState(set, version, m.now())
	if err != nil {
		return err
	}
	m.setState(st)
	return nil
}

// setState makes st the snapshot in use, counting a replaced signing key as
// a rotation.
func (m *Manager) setState(st *state) {
	if old := m.state.Swap(st); old != nil {
		for alg, sk := range st.signing {
			if prev, ok := old.signing[alg]; ok && prev.kid != sk.kid {
				m.rotations.Add(1)
			}
		}
	}
}

// Rotations counts the times this Manager saw a signing key replaced (by
// its own rotation or another replica's), for metrics.
func (m *Manager) Rotations() uint64 { return m.rotations.Load() }

// ErrBusy is returned by RotateNow when another replica holds the rotation
// lease or changed the key set first; try again.
var ErrBusy = errors.New("keys: key set is being changed by another replica")

// writeLocked applies mutate to the freshly read key set under the lease
// and stores the result with a compare-and-swap. It reports done=false,
// with a nil error, when the lease is held elsewhere (unless force) or the
// compare-and-swap lost; the caller reloads. m.mu is held.
func (m *Manager) writeLocked(ctx context.Context, force bool, mutate func(*keySet, time.Time) (bool, error)) (done bool, err error) {
	ok, err := m.store.AcquireLease(ctx, leaseName, m.holder, leaseTTL)
	if err != nil {
		return false, fmt.Errorf("keys: acquire rotation lease: %w", err)
	}
	if !ok && !force {
		return false, nil
	}
	if ok {
		// Release by renewing with a TTL already past; both backends treat
		// that as expired (Redis clamps it to one millisecond).
		defer func() {
			_, _ = m.store.AcquireLease(context.WithoutCancel(ctx), leaseName, m.holder, -time.Millisecond)
		}()
	}
	set, version, err := m.fetch(ctx)
	if err != nil {
		return false, err
	}
	if set == nil {
		set = &keySet{Format: setFormat, Algs: map[string]*algSet{}}
	}
	now := m.now()
	changed, err := mutate(set, now)
	if err != nil {
		return false, err
	}
	st, err := m.storedState(set, version, now)
	if err != nil {
		return false, err
	}
	if !changed {
		m.setState(st)
		return true, nil
	}
	data, err := json.Marshal(set)
	if err != nil {
		return false, fmt.Errorf("keys: encode key set: %w", err)
	}
	nv, err := m.store.PutKeys(ctx, data, version)
	if errors.Is(err, storage.ErrConflict) {
		m.log.Info("key set changed by another replica; reloading", "version", version)
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("keys: store key set: %w", err)
	}
	st.version = nv
	m.setState(st)
	return true, nil
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

// Sync reloads the key set from storage and, when a rotation is due, takes
// the lease and rotates (compare-and-swap; a replica that loses reloads).
// On a storage error it returns the error and keeps serving the keys in
// memory. A key set missing from storage is written back from memory.
func (m *Manager) Sync(ctx context.Context) error {
	if m.static {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	cur := m.state.Load()
	set, version, err := m.fetch(ctx)
	if err != nil {
		return err
	}
	now := m.now()
	if set == nil && cur != nil {
		m.log.Warn("key set missing from storage; writing back the keys in memory")
		if _, err := m.writeLocked(ctx, false, func(s *keySet, _ time.Time) (bool, error) {
			if len(s.Algs) > 0 {
				return false, nil // another replica restored it first
			}
			*s = *cur.set
			return true, nil
		}); err != nil {
			return err
		}
		return nil
	}
	if set == nil {
		return ErrNotReady // no set stored and none in memory to restore
	}
	rotating := !m.complete(set)
	for _, a := range m.algs {
		rotating = rotating || m.due(set, a, now)
	}
	if !rotating {
		if cur != nil && cur.version == version && (cur.expires.IsZero() || now.Before(cur.expires)) {
			return nil
		}
		return m.install(set, version)
	}
	done, err := m.writeLocked(ctx, false, func(s *keySet, now time.Time) (bool, error) {
		changed, err := m.ensure(s, now)
		if err != nil {
			return false, err
		}
		rotated := false
		for _, a := range m.algs {
			if m.due(s, a, now) {
				if err := m.rotate(s, a, now); err != nil {
					return false, err
				}
				rotated = true
			}
		}
		if rotated {
			s.Generation++
		}
		return changed || rotated, nil
	})
	if err != nil {
		return err
	}
	if !done && m.complete(set) {
		return m.install(set, version)
	}
	return nil
}

// RotateNow rotates every configured algorithm at once, under the lease,
// unless another replica rotated since this Manager last loaded the set (so
// two replicas asked at the same moment make one rotation). It returns
// ErrBusy when another replica holds the lease or wrote first.
//
// The key that starts signing is the published Next key, so relying
// parties that fetched the JWKS since the previous rotation already have
// it; a second RotateNow within MaxAge activates a key they may not have
// fetched yet. Use it for a suspected compromise, not routinely.
func (m *Manager) RotateNow(ctx context.Context) error {
	if m.static {
		return ErrStatic
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	cur := m.state.Load()
	if cur == nil {
		return ErrNotReady
	}
	gen := cur.set.Generation
	done, err := m.writeLocked(ctx, false, func(s *keySet, now time.Time) (bool, error) {
		changed, err := m.ensure(s, now)
		if err != nil {
			return false, err
		}
		if s.Generation != gen {
			return changed, nil
		}
		for _, a := range m.algs {
			if err := m.rotate(s, a, now); err != nil {
				return false, err
			}
		}
		s.Generation++
		return true, nil
	})
	if err != nil {
		return err
	}
	if !done {
		return ErrBusy
	}
	return nil
}
