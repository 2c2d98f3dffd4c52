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
// a rotation. m.mu is held (or the Manager is not shared yet).
func (m *Manager) setState(st *state) {
	old := m.state.Load()
	if st.meta == nil {
		if old != nil && old.meta != nil {
			st.meta = old.meta
		} else {
			st.meta = &syncMeta{}
		}
	}
	m.state.Store(st)
	if old != nil {
		for alg, sk := range st.signing {
			if prev, ok := old.signing[alg]; ok && prev.kid != sk.kid {
				m.rotations.Add(1)
			}
		}
	}
}

// meta returns the Manager's bookkeeping; nil before a key set is loaded
// and for static keys.
func (m *Manager) meta() *syncMeta {
	if st := m.state.Load(); st != nil {
		return st.meta
	}
	return nil
}

// Rotations counts the times this Manager saw a signing key replaced (by
// its own rotation or another replica's), for metrics.
func (m *Manager) Rotations() uint64 { return m.rotations.Load() }

// Regressions counts the times this Manager found the stored key set behind
// the one it holds and wrote its own forward: storage empty or holding an
// older revision (rolled back or lost data), a set of the same
// revision written independently (two replicas that both wrote "first"),
// or a newer set lacking this replica's signing keys. For metrics: any
// increase means storage lost or rolled back the key set.
func (m *Manager) Regressions() int64 {
	if mt := m.meta(); mt != nil {
		return mt.regressions.Load()
	}
	return 0
}

// ErrBusy is returned by RotateNow when another replica holds the rotation
// lease or changed the key set first; try again.
var ErrBusy = errors.New("keys: key set is being changed by another replica")

// verdict is how the stored key set relates to the one a replica holds.
type verdict int

const (
	vSame      verdict = iota // the very record this replica holds
	vNewer                    // a later revision that keeps this replica's signing keys
	vLost                     // no set stored
	vOlder                    // an older revision: storage rolled back
	vTieWon                   // same revision, written independently; this replica's wins
	vTieLost                  // same revision, written independently; the stored one wins
	vUnrelated                // a later revision lacking this replica's signing keys
)

// classify compares the stored set (nil when none) with mine. A set whose
// revision equals mine but whose id differs was written without knowing
// mine; the set with the lexicographically larger id wins, so every replica
// picks the same one.
func classify(stored, mine *keySet) verdict {
	switch {
	case stored == nil:
		return vLost
	case stored.Revision == 0 && mine.Revision > 0:
		// Written by a broker that predates revisions (a rolling upgrade):
		// a later set keeps this replica's signing key, if only as retired.
		for alg, as := range mine.Algs {
			if !hasKid(stored.Algs[alg], as.Active.KID) {
				return vOlder
			}
		}
		return vNewer
	case stored.Revision < mine.Revision:
		return vOlder
	case stored.Revision == mine.Revision:
		switch {
		case stored.SetID == mine.SetID:
			return vSame
		case stored.SetID > mine.SetID:
			return vTieLost
		}
		return vTieWon
	}
	for alg, as := range mine.Algs {
		if !hasKid(stored.Algs[alg], as.Active.KID) {
			return vUnrelated
		}
	}
	return vNewer
}

// hasKid reports whether as holds a key kid, signing or retired.
func hasKid(as *algSet, kid string) bool {
	if as == nil {
		return false
	}
	if as.Active.KID == kid || as.Next.KID == kid {
		return true
	}
	for _, r := range as.Retired {
		if r.KID == kid {
			return true
		}
	}
	return false
}

// installable reports whether a replica may install a stored set of this
// verdict as it is.
func installable(v verdict) bool { return v == vSame || v == vNewer }

// reconcile returns the set a write starts from, given the stored set and
// the snapshot in use (nil before any is loaded). A stored set this replica
// may install is the base as it is. Otherwise the write goes forward: from
// this replica's own set when storage is empty, older, or lost the tie,
// with every still-published key of the stored set added as retired; from
// the stored set, with this replica's published keys added as retired, when
// this replica lost the tie or the stored set lacks its keys. Either way
// tokens signed with any of those keys keep verifying until they expire,
// and no key retired by a later revision signs again.
func (m *Manager) reconcile(stored *keySet, cur *state, now time.Time) (*keySet, verdict, error) {
	if cur == nil || cur.set == nil {
		if stored == nil {
			return &keySet{Format: setFormat, Algs: map[string]*algSet{}}, vNewer, nil
		}
		return stored, vNewer, nil
	}
	v := classify(stored, cur.set)
	if installable(v) {
		return stored, v, nil
	}
	mine, err := cur.set.clone()
	if err != nil {
		return nil, v, err
	}
	switch v {
	case vLost:
		return mine, v, nil
	case vOlder, vTieWon:
		m.mergePublished(mine, stored, now)
		return mine, v, nil
	}
	m.mergePublished(stored, mine, now)
	return stored, v, nil
}

// mergePublished adds to base every key other still publishes that base
// lacks: an algorithm base has no keys for is taken whole; otherwise the
// keys join base's Retired list (public half only), other's Active and Next
// until now plus the retirement period, its Retired keys until their own
// RetireAt. base is changed; other is not kept.
func (m *Manager) mergePublished(base, other *keySet, now time.Time) {
	have := map[string]bool{}
	for _, as := range base.Algs {
		for _, sk := range append([]storedKey{as.Active, as.Next}, as.Retired...) {
			have[sk.KID] = true
		}
	}
	for alg, oas := range other.Algs {
		bas := base.Algs[alg]
		if bas == nil {
			base.Algs[alg] = oas
			continue
		}
		var add []storedKey
		for _, sk := range []storedKey{oas.Active, oas.Next} {
			sk.Seal, sk.Private, sk.RetireAt = "", nil, now.Add(m.keep)
			add = append(add, sk)
		}
		for _, r := range oas.Retired {
			if now.Before(r.RetireAt) {
				add = append(add, r)
			}
		}
		for _, sk := range add {
			if !have[sk.KID] {
				have[sk.KID] = true
				bas.Retired = append(bas.Retired, sk)
			}
		}
	}
}

// report logs and counts a stored set this replica is about to repair.
func (m *Manager) report(v verdict, stored *keySet, cur *state) {
	var srev int64
	var sid string
	if stored != nil {
		srev, sid = stored.Revision, stored.SetID
	}
	args := []any{"storage_revision", srev, "replica_revision", cur.set.Revision,
		"storage_set", sid, "replica_set", cur.set.SetID}
	switch v {
	case vLost, vOlder:
		m.log.Error("key set in storage is older than the one this replica holds: storage rolled back or lost data",
			append(args, "storage_empty", stored == nil, "action", "writing this replica's key set forward")...)
	case vTieWon, vTieLost:
		m.log.Error("key set in storage was written independently of this replica's at the same revision: storage lost data; merging both sets",
			append(args, "winner", map[bool]string{true: "storage", false: "replica"}[v == vTieLost])...)
	case vUnrelated:
		m.log.Warn("key set in storage does not hold this replica's signing keys; merging them into it", args...)
	default:
		return
	}
	if cur.meta != nil {
		cur.meta.regressions.Add(1)
	}
}

// writeLocked applies mutate to the freshly read key set, reconciled with
// the one in memory (see reconcile), under the lease and stores the result
// with a compare-and-swap, at the next revision and with a new set id. It
// reports done=false, with a nil error, when the lease is held elsewhere
// (unless force) or the compare-and-swap lost; the caller reloads. m.mu is
// held.
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
	stored, version, err := m.fetch(ctx)
	if err != nil {
		return false, err
	}
	now := m.now()
	cur := m.state.Load()
	set, v, err := m.reconcile(stored, cur, now)
	if err != nil {
		return false, err
	}
	// The revision written is past both the stored one and this
	// replica's, taken before mutate may change the stored set.
	rev := int64(0)
	if stored != nil {
		rev = stored.Revision
	}
	if cur != nil && cur.set != nil {
		rev = max(rev, cur.set.Revision)
	}
	changed, err := mutate(set, now)
	if err != nil {
		return false, err
	}
	changed = changed || !installable(v)
	if changed {
		set.Revision, set.SetID = rev+1, newSetID()
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
	if !installable(v) {
		m.report(v, stored, cur)
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
// memory. It never installs a set older than the one in memory: a stored
// set that is missing, older, written independently at the same revision
// or lacking this replica's signing keys is logged, counted (Regressions)
// and repaired by writing forward (see reconcile).
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
	if set == nil && (cur == nil || cur.set == nil) {
		return ErrNotReady // no set stored and none in memory to restore
	}
	v := vNewer
	if cur != nil && cur.set != nil {
		v = classify(set, cur.set)
	}
	now := m.now()
	write := !installable(v)
	if !write {
		write = !m.complete(set)
		for _, a := range m.algs {
			write = write || m.due(set, a, now)
		}
	}
	if !write {
		if v == vSame && cur.version == version && (cur.expires.IsZero() || now.Before(cur.expires)) {
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
		return changed || rotated, nil
	})
	if err != nil {
		return err
	}
	if !done && installable(v) && m.complete(set) {
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

// runSync is Run's loop: it calls Sync every interval and, when the store
// implements storage.KeyNotifier, as soon as any replica stored a new key
// set, so a rotation reaches every replica within moments. The timer stays
// as the fallback for lost notifications; a subscription that fails or ends
// is retried at the next tick. Errors are logged; the Manager keeps serving
// the keys it has.
func (m *Manager) runSync(ctx context.Context, interval time.Duration) {
	if m.static {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	notifier, _ := m.store.(storage.KeyNotifier)
	var notes <-chan struct{}
	subscribe := func() {
		if notifier == nil || notes != nil {
			return
		}
		ch, err := notifier.SubscribeKeys(ctx)
		if err != nil {
			if ctx.Err() == nil {
				m.log.Warn("cannot subscribe to key-set changes; syncing on the timer only until it works", "err", err)
			}
			return
		}
		notes = ch
		if mt := m.meta(); mt != nil {
			mt.subscribed.Store(true)
		}
	}
	subscribe()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			subscribe()
		case _, ok := <-notes:
			if !ok {
				notes = nil
				if mt := m.meta(); mt != nil {
					mt.subscribed.Store(false)
				}
				continue
			}
		}
		if err := m.Refresh(ctx); err != nil && ctx.Err() == nil {
			m.log.Warn("key sync failed; serving the keys in memory", "err", err)
		}
	}
}

// subscribed reports whether runSync holds a key-change subscription.
func (m *Manager) subscribed() bool {
	mt := m.meta()
	return mt != nil && mt.subscribed.Load()
}
