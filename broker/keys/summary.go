package keys

import (
	"sort"
	"time"
)

// KeyInfo is what operators see of one key of the shared set (never its
// private half).
type KeyInfo struct {
	KID string
	Alg string
	// Role is "active" (signs), "next" (published, signs after the next
	// rotation) or "retired" (published until RetireAt).
	Role     string
	Created  time.Time
	RetireAt time.Time
}

// AlgorithmInfo is one algorithm's keys and rotation schedule.
type AlgorithmInfo struct {
	Alg string
	// RotatedAt is when the active key started signing; NextRotation when
	// it is due to be replaced by the next key (zero for static keys).
	RotatedAt, NextRotation time.Time
	Keys                    []KeyInfo
}

// Summary returns the keys of the set this replica serves, by algorithm
// (sorted), each with active, next and retired keys in that order. It is
// nil while the replica has no usable key set, and for static keys.
func (m *Manager) Summary() []AlgorithmInfo {
	st := m.state.Load()
	if st == nil || st.set == nil {
		return nil
	}
	var out []AlgorithmInfo
	for alg, as := range st.set.Algs {
		ai := AlgorithmInfo{Alg: alg, RotatedAt: as.RotatedAt}
		if m.rotation > 0 {
			ai.NextRotation = as.RotatedAt.Add(m.rotation)
		}
		ai.Keys = append(ai.Keys,
			KeyInfo{KID: as.Active.KID, Alg: alg, Role: "active", Created: as.Active.Created},
			KeyInfo{KID: as.Next.KID, Alg: alg, Role: "next", Created: as.Next.Created})
		for _, r := range as.Retired {
			ai.Keys = append(ai.Keys, KeyInfo{KID: r.KID, Alg: alg, Role: "retired", Created: r.Created, RetireAt: r.RetireAt})
		}
		out = append(out, ai)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Alg < out[j].Alg })
	return out
}

// RotationPeriod is how long an active key signs before rotation.
func (m *Manager) RotationPeriod() time.Duration { return m.rotation }
