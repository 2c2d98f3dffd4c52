package keys

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/fedbroker/fedbroker/jwa"
)

// The fleet's default signing algorithm is recorded in the shared key set
// (keySet.Default), written by the first writer. Every replica must sign
// by default with it: one whose signing.algorithm differs refuses (not
// ready, signs nothing) instead of signing ID tokens with another
// algorithm than its peers and publishing another discovery order. It is
// changed on purpose only, with SetAlgorithm (POST /admin/keys/algorithm).
//
// A set stored by a broker that predates the field has no default; the
// next write records the one this replica last saw recorded, or else its
// own.

var (
	// ErrAlreadyRotated is returned by RotateNow when nothing was rotated:
	// another replica rotated since this one last loaded the key set.
	ErrAlreadyRotated = errors.New("keys: already rotated by another replica")
	// ErrUnknownAlgorithm is returned by SetAlgorithm when the shared key
	// set has no key for the algorithm.
	ErrUnknownAlgorithm = errors.New("keys: the shared key set has no key for that algorithm")
	// ErrUnsupportedAlgorithm is returned by SetAlgorithm for an algorithm
	// the broker cannot sign with at all.
	ErrUnsupportedAlgorithm = errors.New("keys: unsupported signing algorithm")
)

// SupportedAlgorithms returns the algorithms the broker can sign with.
func SupportedAlgorithms() []string { return jwa.Signing() }

// fleetView is what a Manager last saw of the fleet in the shared key set.
type fleetView struct {
	def  string   // the recorded default; "" if none was ever seen
	algs []string // the set's algorithms, by name
}

// observe remembers what set says about the fleet. A set without a
// recorded default (written by an older broker) keeps the default seen
// before.
func (m *Manager) observe(set *keySet) {
	v := &fleetView{def: set.Default, algs: slices.Sorted(maps.Keys(set.Algs))}
	if v.def == "" {
		if prev := m.seen.Load(); prev != nil {
			v.def = prev.def
		}
	}
	m.seen.Store(v)
}

// fleetDefault is the fleet's default algorithm according to set: the one
// it records, or for a set without one the one last seen recorded; "" if
// none is known.
func (m *Manager) fleetDefault(set *keySet) string {
	if set.Default != "" {
		return set.Default
	}
	if v := m.seen.Load(); v != nil {
		return v.def
	}
	return ""
}

// checkDefault reports, as a *MismatchError, that set records another
// default algorithm for the fleet than this replica's signing.algorithm.
func (m *Manager) checkDefault(set *keySet) error {
	def, mine := m.fleetDefault(set), m.algs[0]
	if def == "" || def == mine {
		return nil
	}
	var reason string
	if set.Algs[def] == nil {
		reason = fmt.Sprintf("the key set shared in storage records %s as the fleet's signing algorithm but has no %s key: "+
			"POST /admin/keys/algorithm to make %s (this replica's signing.algorithm) the fleet's, or set signing.algorithm to %s "+
			"once %s is in signing.algorithms on every replica", def, def, mine, def, def)
	} else {
		reason = fmt.Sprintf("this replica signs with %s but the fleet signs with %s (recorded in the key set shared in storage): "+
			"set signing.algorithm to %s on this replica and restart it; or, to move the fleet to %s, "+
			`POST /admin/keys/algorithm {"algorithm": %q} (every replica must then have signing.algorithm %s)`,
			mine, def, def, mine, mine, mine)
	}
	return &MismatchError{Path: "signing.algorithm", Reason: reason, fleet: def}
}

// PublishedAlgorithms returns the algorithms of the key set shared in
// storage: the fleet's default recorded in the set first, then the others
// by name. Replicas that share a set publish the same list whatever their
// signing.algorithm and signing.algorithms; a replica refusing the set
// publishes what it last saw of it. With static keys, or before a set was
// seen, it is Algorithms.
func (m *Manager) PublishedAlgorithms() []string {
	if m.static {
		return m.Algorithms()
	}
	var def string
	var algs []string
	if st := m.state.Load(); st != nil && st.set != nil {
		def, algs = m.fleetDefault(st.set), slices.Sorted(maps.Keys(st.set.Algs))
	} else if v := m.seen.Load(); v != nil && len(v.algs) > 0 {
		def, algs = v.def, v.algs
	} else {
		return m.Algorithms()
	}
	if !slices.Contains(algs, def) {
		// No default recorded yet: this replica's, which its next write
		// records.
		def = m.algs[0]
	}
	out := []string{def}
	for _, a := range algs {
		if a != def {
			out = append(out, a)
		}
	}
	return out
}

// AlgorithmChange is what SetAlgorithm did.
type AlgorithmChange struct {
	// Changed is false when Algorithm already was the fleet's default.
	Changed bool
	// Algorithm is the fleet's default now; Previous the one before (""
	// when the set recorded none).
	Algorithm, Previous string
	// Generation is the key set's rotation count.
	Generation int64
}

// SetAlgorithm makes alg the fleet's default signing algorithm, recorded
// in the shared key set. The set must already have keys for alg (it is in
// signing.algorithms of the replicas): otherwise ErrUnknownAlgorithm, and
// ErrUnsupportedAlgorithm for an algorithm the broker cannot sign with. On
// every replica whose signing.algorithm is not alg (this one included) the
// next sync refuses, and every replica whose signing.algorithm is alg
// becomes ready. It works on a replica that refuses only because its
// signing.algorithm is not the fleet's, so the fleet can be changed even
// when every replica runs the new signing.algorithm already; a replica
// refusing for another reason returns that reason, matching ErrNotReady.
// ErrBusy means another replica held the lease for the whole wait.
func (m *Manager) SetAlgorithm(ctx context.Context, alg string) (AlgorithmChange, error) {
	if !jwa.CanSign(alg) {
		return AlgorithmChange{}, fmt.Errorf("%w %q: want one of %s", ErrUnsupportedAlgorithm, alg, strings.Join(jwa.Signing(), ", "))
	}
	if m.static {
		return AlgorithmChange{}, ErrStatic
	}
	if err := m.Readiness(); err != nil && !fleetOnly(err) {
		return AlgorithmChange{}, notReady(err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	deadline := time.Now().Add(startWait)
	for {
		var res AlgorithmChange
		done, err := m.writeSet(ctx, false, false, func(s *keySet, now time.Time) (bool, error) {
			if s.Algs[alg] == nil {
				return false, fmt.Errorf("%w %s (it has %s): add %s to signing.algorithms on every replica and roll them out first",
					ErrUnknownAlgorithm, alg, strings.Join(slices.Sorted(maps.Keys(s.Algs)), ", "), alg)
			}
			changed, err := m.ensure(s, now)
			if err != nil {
				return false, err
			}
			res = AlgorithmChange{Algorithm: alg, Previous: m.fleetDefault(s), Generation: s.Generation}
			if s.Default == alg {
				return changed, nil
			}
			res.Changed = res.Previous != alg
			s.Default = alg
			return true, nil
		})
		if err != nil {
			return AlgorithmChange{}, err
		}
		if done {
			if res.Changed {
				m.log.Warn("the fleet's signing algorithm changed: replicas whose signing.algorithm differs now refuse to sign",
					"algorithm", alg, "previous", res.Previous)
			}
			return res, nil
		}
		if time.Now().After(deadline) {
			return AlgorithmChange{}, ErrBusy
		}
		select {
		case <-ctx.Done():
			return AlgorithmChange{}, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
