package keys

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// check reports why this replica cannot use set (checkKeys, then
// checkDefault), remembering what set says about the fleet. It returns a
// *MismatchError.
func (m *Manager) check(set *keySet) error {
	m.observe(set)
	if err := m.checkKeys(set); err != nil {
		return err
	}
	return m.checkDefault(set)
}

// checkKeys reports why this replica cannot use the keys of set: a private
// key that does not open with its key-encryption key (or is sealed and it
// has none), or no key for its default algorithm in a set that has keys.
// It returns a *MismatchError.
func (m *Manager) checkKeys(set *keySet) error {
	algs := slices.Sorted(maps.Keys(set.Algs))
	if len(algs) > 0 && set.Algs[m.algs[0]] == nil {
		reason := fmt.Sprintf("this replica signs with %s but the key set shared in storage has no %s key (it has %s): every replica "+
			"must have the same signing.algorithm; to change it, first add %s to signing.algorithms on every replica",
			m.algs[0], m.algs[0], strings.Join(algs, ", "), m.algs[0])
		if def := m.fleetDefault(set); def != "" {
			reason += fmt.Sprintf(", then POST /admin/keys/algorithm; until then set signing.algorithm to %s, the fleet's", def)
		}
		return &MismatchError{Path: "signing.algorithm", Reason: reason}
	}
	for _, a := range algs {
		as := set.Algs[a]
		for _, sk := range []storedKey{as.Active, as.Next} {
			if len(sk.Private) == 0 || sk.Seal != sealAESGCM {
				continue
			}
			if m.sealer.aead == nil {
				return &MismatchError{Path: "signing.key_encryption_key", Reason: fmt.Sprintf(
					"the signing keys in storage are encrypted (key %s) and no key-encryption key is configured: "+
						"give this replica the signing.key_encryption_key of the other replicas", sk.KID)}
			}
			der, err := m.sealer.aead.Open(sk.Private, []byte(sk.KID))
			if err != nil {
				return &MismatchError{Path: "signing.key_encryption_key", Reason: fmt.Sprintf(
					"cannot decrypt the signing keys in storage (key %s): wrong key-encryption key or corrupt key set; "+
						"every replica must have the same signing.key_encryption_key", sk.KID)}
			}
			clear(der)
		}
	}
	return nil
}

// fleetOnly reports whether err is a refusal that only the fleet's
// recorded default algorithm causes.
func fleetOnly(err error) bool {
	var me *MismatchError
	return errors.As(err, &me) && me.fleet != ""
}

// notReady wraps a refusal so that it matches ErrNotReady.
func notReady(err error) error {
	if errors.Is(err, ErrNotReady) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrNotReady, err)
}

// refuseAtStart handles an error while New loads the set: a refusal caused
// only by the fleet's default makes the Manager start refusing (so the
// change can still be made through this replica's admin API, and the
// replica becomes ready once it is); anything else fails New.
func (m *Manager) refuseAtStart(err error) error {
	if err != nil && fleetOnly(err) {
		m.refuseLocked(err)
		return nil
	}
	return err
}

// refuseLocked makes this Manager sign nothing and report not ready
// because of err, logging an ERROR when the reason changes. m.mu is held.
func (m *Manager) refuseLocked(err error) {
	m.state.Store(nil)
	prev := m.refusal.Swap(&refusal{err: err})
	if prev != nil && prev.err.Error() == err.Error() {
		return
	}
	attrs := []any{"err", err}
	var me *MismatchError
	if errors.As(err, &me) {
		attrs = append(attrs, "config_path", me.Path)
		if me.Path == "signing.algorithm" {
			attrs = append(attrs, "algorithm", m.algs[0])
		}
		if me.fleet != "" {
			attrs = append(attrs, "fleet_algorithm", me.fleet)
		}
	}
	m.log.Error("signing refused: this replica cannot use the key set shared in storage; it reports not ready and signs nothing until that is fixed", attrs...)
}

// refused refuses because of err when it is a *MismatchError (the stored
// set changed under this replica) and reports whether it did. m.mu is
// held.
func (m *Manager) refused(err error) bool {
	var me *MismatchError
	if !errors.As(err, &me) {
		return false
	}
	m.refuseLocked(err)
	return true
}

// adopt makes st the snapshot in use, unless its set records another
// default algorithm for the fleet than this replica's: then the Manager
// refuses instead. Adopting a snapshot ends a refusal: its set opened with
// this replica's key-encryption key and has every key it signs with. m.mu
// is held.
func (m *Manager) adopt(st *state) {
	if st.set != nil {
		m.observe(st.set)
		if err := m.checkDefault(st.set); err != nil {
			m.refuseLocked(err)
			return
		}
	}
	m.setState(st)
	if prev := m.refusal.Swap(nil); prev != nil {
		m.log.Info("the key set in storage is usable again; signing resumes", "was", prev.err)
	}
}

// Refresh is one step of Run: Sync, which checks the key set in storage
// against this replica (its key-encryption key opens the private keys; the
// set has a key for its signing.algorithm and records it as the fleet's
// default), refusing to sign while it does not and signing again as soon
// as it does. A storage error leaves everything as it is: the Manager
// keeps serving the keys in memory.
func (m *Manager) Refresh(ctx context.Context) error {
	return m.Sync(ctx)
}
