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

// install decodes set and makes it the snapshot in use (see adopt).
func (m *Manager) install(set *keySet, version int64) error {
	st, err := m.storedState(set, version, m.now())
	if err != nil {
		return err
	}
	m.adopt(st)
	return nil
}

// setState makes st the snapshot in use, counting a replaced signing key as
// a rotation. m.mu is held (or the Manager is not shared yet).
func (m *Manager) setState(st *state) {
	old := m.state.Load()
	m.state.Store(st)
	if old != nil {
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

// Regressions counts the times this Manager found the stored key set behind
// the one it holds and wrote its own forward: storage empty or holding an
// older revision (rolled back or lost data), a set of the same
// revision written independently (two replicas that both wrote "first"),
// or a newer set lacking this replica's signing keys. For metrics: any
// increase means storage lost or rolled back the key set. The count covers
// the Manager's whole life, refusals included: it never goes down.
func (m *Manager) Regressions() int64 { return m.regressions.Load() }

// ErrBusy is returned by Rotate, RotateNow and SetAlgorithm when another
// replica holds the rotation lease or changed the key set first; try
// again.
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

// storedIsBase reports whether a write after this verdict starts from the
// stored set (see reconcile), rather than from this replica's.
func storedIsBase(v verdict) bool { return installable(v) || v == vTieLost || v == vUnrelated }

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
	m.regressions.Add(1)
}

// writeLocked applies mutate to the freshly read key set, reconciled with
// the one in memory (see reconcile), under the lease and stores the result
// with a compare-and-swap, at the next revision and with a new set id; a
// set without a recorded default gets the fleet's (see fleetDefault) or
// this replica's. It reports done=false, with a nil error, when the lease
// is held elsewhere (unless force) or the compare-and-swap lost; the
// caller reloads. A set this replica cannot use (check: another
// replica's write since the caller looked) is not written: a
// *MismatchError. m.mu is held.
func (m *Manager) writeLocked(ctx context.Context, force bool, mutate func(*keySet, time.Time) (bool, error)) (done bool, err error) {
	return m.writeSet(ctx, force, true, mutate)
}

// writeSet is writeLocked; guard=false skips the check of the set before
// mutate, for SetAlgorithm, which changes the fleet's default on purpose.
// The written set is adopted (see adopt) either way.
func (m *Manager) writeSet(ctx context.Context, force, guard bool, mutate func(*keySet, time.Time) (bool, error)) (done bool, err error) {
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
	if guard {
		if err := m.check(set); err != nil {
			return false, err
		}
	}
	changed, err := mutate(set, now)
	if err != nil {
		return false, err
	}
	if set.Default == "" {
		if set.Default = m.fleetDefault(set); set.Default == "" {
			set.Default = m.algs[0]
		}
		changed = true
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
		m.adopt(st)
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
	m.adopt(st)
	return true, nil
}

// Sync reloads the key set from storage and, when a rotation is due, takes
// the lease and rotates (compare-and-swap; a replica that loses reloads).
// On a storage error it returns the error and keeps serving the keys in
// memory. It never installs a set older than the one in memory: a stored
// set that is missing, older, written independently at the same revision
// or lacking this replica's signing keys is logged, counted (Regressions)
// and repaired by writing forward (see reconcile).
//
// Every Sync checks the stored set against this replica (check): while its
// key-encryption key does not open the keys, the set has no key for its
// signing.algorithm, or the set it would use records another default
// algorithm for the fleet, the Manager refuses (Readiness; logged once per
// reason) and writes nothing; the first Sync that finds the set usable
// ends the refusal.
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
	if set != nil {
		check := m.checkKeys
		if storedIsBase(v) {
			// The fleet's default is the stored set's only when that set
			// is the one this replica would use: an older one (a storage
			// rollback) is overwritten with this replica's, default and
			// all.
			check = m.check
		}
		if err := check(set); err != nil {
			m.refuseLocked(err)
			return nil
		}
	}
	now := m.now()
	write := !installable(v)
	if !write {
		write = !m.complete(set) || set.Default == ""
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
	if m.refused(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if !done && installable(v) && m.complete(set) {
		return m.install(set, version)
	}
	return nil
}
