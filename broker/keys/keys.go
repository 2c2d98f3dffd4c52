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
// The set also records the fleet's default signing algorithm. A replica
// whose configuration disagrees with the shared set (another
// key-encryption key, no key for its signing.algorithm, or another
// default algorithm) refuses: it reports not ready and signs nothing,
// rather than signing differently from its peers. SetAlgorithm changes
// the fleet's default on purpose.
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
	"slices"
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

// ErrStatic is returned by Rotate, RotateNow and SetAlgorithm when keys
// come from static PEM files.
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
	// Reason names the values on both sides and what to do.
	Reason string
	// fleet is set when the only disagreement is the fleet's default
	// algorithm recorded in the set (this replica has keys and opens them):
	// changing the fleet's default (SetAlgorithm) would make it usable.
	fleet string
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
	// regressions counts repairs of a stored key set that was older than
	// this replica's, missing, or written independently of it. It lives as
	// long as the Manager (a refusal does not reset it): it is a counter.
	regressions atomic.Int64
	// sub is set while Run's loop holds a key-change subscription.
	sub atomic.Bool
	// seen is what this Manager last saw of the fleet in a shared key set
	// it checked: the recorded default algorithm and the set's algorithms.
	seen atomic.Pointer[fleetView]
	// refusal, when set, is why the stored key set is not used: this
	// replica signs nothing and reports not ready until a sync finds the
	// set usable again. While it is set, state is nil.
	refusal atomic.Pointer[refusal]
	// mu serializes loads and writes of the key set within this process.
	mu sync.Mutex
}

// New returns a Manager with the key set loaded from store, creating the
// set (under the lease, with a compare-and-swap) when none is stored yet or
// adding keys for configured algorithms it lacks. The first writer records
// its Algorithm as the fleet's default in the set. It fails when storage
// cannot be reached, when the stored keys cannot be decrypted with KEK or
// have no key for Algorithm (a *MismatchError naming
// signing.key_encryption_key or signing.algorithm), or when the options are
// invalid. A stored set whose recorded default is not Algorithm does not
// fail New: the Manager starts refusing (Readiness, logged), signs
// nothing, and becomes ready once the fleet's default is changed to its own
// (SetAlgorithm, on any replica). With StaticKeys the store is not used and
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

// start loads the key set, creating it or adding missing algorithms (or
// the fleet's default, in a set stored by an older broker) under the
// lease. When another replica holds the lease it waits a little for that
// replica's set, then writes its own anyway: the compare-and-swap still
// lets exactly one set win, and the loser loads the winner's. A set whose
// recorded default is not this replica's makes it refuse, not fail.
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
				return m.refuseAtStart(err)
			}
		}
		if set != nil && m.complete(set) && set.Default != "" {
			return m.install(set, version)
		}
		done, err := m.writeLocked(ctx, time.Now().After(deadline), func(set *keySet, now time.Time) (bool, error) {
			return m.ensure(set, now)
		})
		if err != nil {
			return m.refuseAtStart(err)
		}
		if done {
			return nil
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
// stored key set does not open with this replica's key-encryption key, has
// no key for its signing.algorithm, or records another default algorithm
// for the fleet (a *MismatchError), or no key set is loaded (ErrNotReady).
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
