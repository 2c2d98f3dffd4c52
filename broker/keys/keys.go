// Package keys owns the broker's signing keys: it generates them, keeps
// them in storage so every replica and every restart signs with the same
// key, rotates them, and publishes the public halves as a JWKS.
//
// Per algorithm there is an Active key (signs), a Next key (published one
// rotation ahead, so relying parties have it cached before it ever signs)
// and Retired keys (public only, published until every token they signed
// has expired). Rotation moves Next to Active, generates a fresh Next and
// retires the old Active until now + MaxTokenLifetime + one minute. Exactly
// one replica rotates at a time: rotation runs under a storage lease and
// writes the set with a compare-and-swap on its version; a replica that
// loses reloads.
//
// Private keys are stored as PKCS#8, sealed with AES-256-GCM under the
// key-encryption key when one is configured. Sign, Verify and JWKS never do
// I/O: they work from the key set held in memory, which Sync refreshes.
package keys

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fedbroker/fedbroker/broker/storage"
	"github.com/fedbroker/fedbroker/jwa"
)

const (
	// leaseName is the storage lease held while the key set is written.
	leaseName = "keys-rotation"
	// leaseTTL bounds how long a crashed writer blocks the others.
	leaseTTL = 30 * time.Second
	// retireLeeway is added to MaxTokenLifetime before a retired key is
	// dropped, covering clock skew and replicas that sign with the old key
	// until their next Sync.
	retireLeeway = time.Minute
	// maxSyncInterval caps the Run interval so every replica picks up a
	// rotation well within retireLeeway.
	maxSyncInterval = 30 * time.Second
	// startWait is how long New waits for a lease holder's key set before
	// writing its own.
	startWait = 3 * time.Second
)

// ErrStatic is returned by RotateNow when keys come from static PEM files.
var ErrStatic = errors.New("keys: static keys are not rotated")

// ErrNotReady is returned by Sign and Verify while no usable key set is
// loaded: before the first load, and while the Manager refuses the stored
// set (see Readiness). It matches storage.ErrUnavailable, so the token
// endpoint answers it as 503 temporarily_unavailable, not 500.
var ErrNotReady error = notReadyError{}

type notReadyError struct{}

func (notReadyError) Error() string { return "keys: no usable key set loaded" }

// Is makes ErrNotReady match storage.ErrUnavailable.
func (notReadyError) Is(target error) bool { return target == storage.ErrUnavailable }

// MismatchError says why this replica cannot use the key set shared in
// storage: its configuration at Path disagrees with the set's.
type MismatchError struct {
	// Path is the configuration path at fault: signing.key_encryption_key
	// or signing.algorithm.
	Path string
	// Reason names the values on both sides.
	Reason string
}

func (e *MismatchError) Error() string { return "keys: " + e.Path + ": " + e.Reason }

// refusal is why a Manager refuses to sign.
type refusal struct{ err error }

// StaticKey is a PEM private key file (PKCS#8, SEC 1 EC or PKCS#1 RSA).
// KeyID defaults to the key's RFC 7638 thumbprint.
type StaticKey struct{ File, KeyID string }

// Options configure a Manager. The zero value, apart from a storage, gives
// ES256 keys rotated daily.
type Options struct {
	// Algorithm is the default signing algorithm: "ES256" (default),
	// "RS256" or "EdDSA".
	Algorithm string
	// Algorithms are additional algorithms to keep keys for.
	Algorithms []string
	// RotationPeriod is how long a key signs before it is rotated
	// (default 24h).
	RotationPeriod time.Duration
	// MaxTokenLifetime is the longest lifetime of any token signed;
	// retired keys stay published this long plus one minute after they
	// last signed (default 24h).
	MaxTokenLifetime time.Duration
	// KEK is a 32-byte key-encryption key sealing private keys in storage.
	// Nil stores them in clear, which New logs as a warning.
	KEK []byte
	// StaticKeys, when set, are the only keys: nothing is generated,
	// stored or rotated. The first key of each algorithm signs.
	StaticKeys []StaticKey
	Logger     *slog.Logger
	Now        func() time.Time
	// HolderID names this replica in the rotation lease (default random).
	HolderID string
}

// Manager signs and verifies tokens with the broker's keys. It is safe for
// concurrent use.
type Manager struct {
	store    storage.Storage
	algs     []string // default first
	rotation time.Duration
	keep     time.Duration // MaxTokenLifetime + retireLeeway
	sealer   sealer
	static   bool
	log      *slog.Logger
	now      func() time.Time
	holder   string

	state     atomic.Pointer[state]
	rotations atomic.Uint64
	// refusal, when set, is why the stored key set is not used: this
	// replica signs nothing and reports not ready until a Refresh finds
	// the set usable again.
	refusal atomic.Pointer[refusal]
	// mu serializes loads and writes of the key set within this process.
	mu sync.Mutex
}

// New returns a Manager with the key set loaded from store, creating the
// set (under the lease, with a compare-and-swap) when none is stored yet or
// adding keys for configured algorithms it lacks. It fails when storage
// cannot be reached, when the stored keys cannot be decrypted with KEK or
// have no key for Algorithm (a *MismatchError naming
// signing.key_encryption_key or signing.algorithm), or when the options are
// invalid. With StaticKeys the store is not used and
// may be nil.
func New(ctx context.Context, store storage.Storage, opts Options) (*Manager, error) {
	m := &Manager{
		store:    store,
		rotation: opts.RotationPeriod,
		log:      opts.Logger,
		now:      opts.Now,
		holder:   opts.HolderID,
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	if m.now == nil {
		m.now = time.Now
	}
	if m.rotation <= 0 {
		m.rotation = 24 * time.Hour
	}
	life := opts.MaxTokenLifetime
	if life <= 0 {
		life = 24 * time.Hour
	}
	m.keep = life + retireLeeway
	if m.holder == "" {
		b := make([]byte, 12)
		_, _ = rand.Read(b)
		m.holder = hex.EncodeToString(b)
	}
	def := opts.Algorithm
	if def == "" {
		def = "ES256"
	}
	for _, a := range append([]string{def}, opts.Algorithms...) {
		if !jwa.CanSign(a) {
			return nil, fmt.Errorf("keys: unsupported algorithm %q (want one of %v)", a, jwa.Signing())
		}
		if !slices.Contains(m.algs, a) {
			m.algs = append(m.algs, a)
		}
	}

	if len(opts.StaticKeys) > 0 {
		m.static = true
		st, err := m.loadStatic(opts.StaticKeys)
		if err != nil {
			return nil, err
		}
		m.state.Store(st)
		return m, nil
	}
	if store == nil {
		return nil, errors.New("keys: no storage and no static keys")
	}
	s, err := newSealer(opts.KEK)
	if err != nil {
		return nil, err
	}
	m.sealer = s
	if opts.KEK == nil {
		m.log.Warn("signing keys are stored UNENCRYPTED: anyone who can read the storage can forge tokens; set a key-encryption key")
	}
	if err := m.start(ctx); err != nil {
		return nil, err
	}
	return m, nil
}

// start loads the key set, creating it or adding missing algorithms under
// the lease. When another replica holds the lease it waits a little for
// that replica's set, then writes its own anyway: the compare-and-swap
// still lets exactly one set win, and the loser loads the winner's.
func (m *Manager) start(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	deadline := time.Now().Add(startWait)
	for {
		set, version, err := m.fetch(ctx)
		if err != nil {
			return err
		}
		if set != nil {
			if err := m.check(set); err != nil {
				return err
			}
		}
		if set != nil && m.complete(set) {
			return m.install(set, version)
		}
		done, err := m.writeLocked(ctx, time.Now().After(deadline), func(set *keySet, now time.Time) (bool, error) {
			return m.ensure(set, now)
		})
		if err != nil || done {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("keys: waiting for the key set: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// complete reports whether set has keys for every configured algorithm.
func (m *Manager) complete(set *keySet) bool {
	for _, a := range m.algs {
		if set.Algs[a] == nil {
			return false
		}
	}
	return true
}

// Ready reports whether a usable key set is loaded (Readiness is nil).
func (m *Manager) Ready() bool { return m.Readiness() == nil }

// Readiness returns nil when this Manager signs, or why it does not: the
// stored key set does not open with this replica's key-encryption key, or
// has no key for its signing.algorithm (a *MismatchError), or no key set is
// loaded (ErrNotReady).
func (m *Manager) Readiness() error {
	if r := m.refusal.Load(); r != nil {
		return r.err
	}
	if m.state.Load() == nil {
		return ErrNotReady
	}
	return nil
}

// Algorithms returns the algorithms this Manager signs with, default first.
func (m *Manager) Algorithms() []string { return slices.Clone(m.algs) }

// PublishedAlgorithms returns the algorithms of the key set shared in
// storage, as loaded: this replica's default first (the same on every
// replica, which Readiness enforces as far as the set allows), then the
// others by name. Replicas that share a set publish the same list even
// when their signing.algorithms differ. With static keys, or before a set
// is loaded, it is Algorithms.
func (m *Manager) PublishedAlgorithms() []string {
	st := m.state.Load()
	if st == nil || st.set == nil {
		return m.Algorithms()
	}
	out := []string{m.algs[0]}
	var rest []string
	for a := range st.set.Algs {
		if a != m.algs[0] {
			rest = append(rest, a)
		}
	}
	slices.Sort(rest)
	return append(out, rest...)
}

// check reports why this replica cannot use set: a private key that does
// not open with its key-encryption key (or is sealed and it has none), or
// no key for its default algorithm in a set that has keys. It returns a
// *MismatchError.
func (m *Manager) check(set *keySet) error {
	algs := slices.Sorted(maps.Keys(set.Algs))
	if len(algs) > 0 && set.Algs[m.algs[0]] == nil {
		return &MismatchError{Path: "signing.algorithm", Reason: fmt.Sprintf(
			"this replica signs with %s but the key set shared in storage has no %s key (it has %s): every replica "+
				"must have the same signing.algorithm; to change it, first add %s to signing.algorithms on every replica",
			m.algs[0], m.algs[0], strings.Join(algs, ", "), m.algs[0])}
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

// refuse makes this Manager sign nothing and report not ready because of
// err, logging an ERROR when the reason changes.
func (m *Manager) refuse(err error) {
	m.mu.Lock()
	m.state.Store(nil)
	prev := m.refusal.Swap(&refusal{err: err})
	m.mu.Unlock()
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
	}
	m.log.Error("signing refused: this replica cannot use the key set shared in storage; it reports not ready and signs nothing until that is fixed", attrs...)
}

// Refresh is one step of Run: it checks the key set in storage against
// this replica (its key-encryption key opens the private keys; the set has
// a key for its signing.algorithm), refusing to sign while it does not,
// then calls Sync. A storage error leaves everything as it is: the
// Manager keeps serving the keys in memory.
func (m *Manager) Refresh(ctx context.Context) error {
	if m.static {
		return nil
	}
	set, _, err := m.fetch(ctx)
	if err != nil {
		return err
	}
	if set != nil {
		if err := m.check(set); err != nil {
			m.refuse(err)
			return nil
		}
	}
	err = m.Sync(ctx)
	if m.state.Load() != nil {
		if prev := m.refusal.Swap(nil); prev != nil {
			m.log.Info("the key set in storage is usable again; signing resumes", "was", prev.err)
		}
	}
	return err
}

// MaxAge is the Cache-Control max-age for JWKS responses: a quarter of the
// rotation period, at most one hour, so relying parties see the Next key
// long before it signs.
func (m *Manager) MaxAge() time.Duration {
	return min(m.rotation/4, time.Hour)
}

// syncInterval is how often Run calls Sync.
func (m *Manager) syncInterval() time.Duration {
	return max(min(m.MaxAge()/4, maxSyncInterval), time.Second)
}

// Run calls Refresh every syncInterval until ctx is done. Storage errors
// are logged and the Manager keeps serving the keys it has; a stored set
// this replica cannot use makes it refuse to sign (see Readiness).
func (m *Manager) Run(ctx context.Context) {
	m.runSync(ctx, m.syncInterval())
}

// Rotation is what Rotate did.
type Rotation struct {
	// Rotated is false when another replica rotated the set since this
	// one last loaded it, so nothing was rotated.
	Rotated bool
	// Generation is the key set's rotation count after the call: the one
	// this rotation made, or the other replica's.
	Generation int64
}

// Rotate is RotateNow reporting what happened: it rotates every configured
// algorithm under the lease, unless another replica rotated since this
// Manager last loaded the set (its default algorithm's Active key is no
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
		if errors.Is(err, ErrNotReady) {
			return Rotation{}, err
		}
		return Rotation{}, fmt.Errorf("%w: %w", ErrNotReady, err)
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
