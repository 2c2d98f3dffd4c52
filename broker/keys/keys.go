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

// ErrStatic is returned by RotateNow when keys come from static PEM files.
var ErrStatic = errors.New("keys: static keys are not rotated")

// ErrNotReady is returned by Sign and Verify before any key set is loaded.
var ErrNotReady = errors.New("keys: no key set loaded")

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
	// mu serializes loads and writes of the key set within this process.
	mu sync.Mutex
}

// New returns a Manager with the key set loaded from store, creating the
// set (under the lease, with a compare-and-swap) when none is stored yet or
// adding keys for configured algorithms it lacks. It fails when storage
// cannot be reached, when the stored keys cannot be decrypted with KEK, or
// when the options are invalid. With StaticKeys the store is not used and
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

// Ready reports whether a key set is loaded.
func (m *Manager) Ready() bool { return m.state.Load() != nil }

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

// Run calls Sync every syncInterval until ctx is done. Errors are logged;
// the Manager keeps serving the keys it has.
func (m *Manager) Run(ctx context.Context) {
	if m.static {
		return
	}
	t := time.NewTicker(m.syncInterval())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := m.Sync(ctx); err != nil && ctx.Err() == nil {
				m.log.Warn("key sync failed; serving the keys in memory", "err", err)
			}
		}
	}
}
