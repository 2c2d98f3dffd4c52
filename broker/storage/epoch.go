package storage

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// An epoch is a backend's account of its own continuity. A shared backend
// keeps one record: a random id, the moment the epoch began (Since) and a
// counter that every client advances (a tick) with every security write
// and on a timer, remembering the highest value it saw. A store that comes
// back empty has no record; one restored from an older snapshot, or a
// replica promoted with missing writes, has a counter below what a
// running client has seen. Either way the client that notices starts a new
// epoch at once (writing forward, never back), and from then on every
// replica treats state from before it as possibly lost: refresh families,
// codes and sessions created before Since are not found, and access tokens
// issued before it are refused where the broker checks revocation. Users
// sign in again; no decision that storage forgot (a rotation, a
// revocation, a logout) can be undone by the loss.

// Epoch is one state of a backend's epoch record.
type Epoch struct {
	ID    string
	Since time.Time
	N     int64
}

// EpochChange is what a tick found.
type EpochChange int

const (
	// EpochSame: the record was there and not behind; it was advanced.
	EpochSame EpochChange = iota
	// EpochCreated: there was no record; the tick created one. For a
	// client that saw none before it is a new store, and the epoch's Since
	// is zero: there was nothing before to distrust, and records are never
	// compared across replicas' clocks for it. Otherwise the store lost
	// everything, and Since is the writer's now, as after EpochBehind.
	EpochCreated
	// EpochBehind: the record's counter was below the highest this client
	// had seen: the store rolled back. The tick wrote a new epoch forward.
	EpochBehind
)

// EpochJump is how far a new epoch written forward moves the counter past
// the highest value its writer saw, so that other clients, which may have
// seen a little more than the writer, find the new epoch ahead of them and
// adopt it instead of each writing their own.
const EpochJump = 1 << 32

// NewEpochID returns a random epoch id.
func NewEpochID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// EpochTracker is one client's memory of a backend's epoch; backends that
// can lose or roll back state embed one. It is safe for concurrent use.
type EpochTracker struct {
	log *slog.Logger

	mu  sync.Mutex
	cur Epoch

	since       atomic.Int64 // cur.Since in Unix nanoseconds, for lock-free reads
	regressions atomic.Int64
}

// NewEpochTracker returns a tracker that logs through log (nil: discard).
func NewEpochTracker(log *slog.Logger) *EpochTracker {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &EpochTracker{log: log}
}

// Seen returns the highest counter observed (0 before the first tick).
func (t *EpochTracker) Seen() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.cur.N
}

// Since returns the start of the epoch last observed (zero before the
// first tick).
func (t *EpochTracker) Since() time.Time {
	n := t.since.Load()
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// Regressions counts the losses and rollbacks this client detected.
func (t *EpochTracker) Regressions() int64 { return t.regressions.Load() }

// Observe records what a tick returned, logging an ERROR when the store
// lost or rolled back state and a WARN when another client started a new
// epoch.
func (t *EpochTracker) Observe(e Epoch, change EpochChange) {
	t.mu.Lock()
	defer t.mu.Unlock()
	prev := t.cur
	switch {
	case change == EpochCreated && prev.N == 0:
		// A new store (or one this client never saw): nothing to distrust.
	case change == EpochCreated:
		t.regressions.Add(1)
		t.log.Error("storage lost its state (found empty): refresh tokens, sessions and codes from before are refused and access tokens issued before are no longer accepted by introspection, userinfo or token exchange; users sign in again",
			"epoch", e.ID, "since", e.Since)
	case change == EpochBehind:
		t.regressions.Add(1)
		t.log.Error("storage rolled back (its epoch counter is behind what this replica saw: restored from an older snapshot or failed over with lost writes): refresh tokens, sessions and codes from before are refused and access tokens issued before are no longer accepted by introspection, userinfo or token exchange; users sign in again",
			"epoch", e.ID, "since", e.Since, "stored_counter_below", prev.N)
	case prev.ID != "" && e.ID != prev.ID:
		if e.N < prev.N {
			// An older record than the one in memory without the tick
			// noticing cannot happen (ticks compare counters); keep ours.
			return
		}
		t.log.Warn("storage epoch changed: another replica found storage empty or rolled back; state from before is refused",
			"epoch", e.ID, "since", e.Since)
	}
	if e.N < prev.N && e.ID == prev.ID {
		e.N = prev.N
	}
	t.cur = e
	var ns int64
	if e.Since.After(time.Unix(0, 0)) {
		ns = e.Since.UnixNano()
	}
	t.since.Store(ns)
}

// EpochInterval is how often the broker calls Storage.Heartbeat. A
// rollback is detected by the first tick after it as long as any client
// ticked between the snapshot and the loss; with every replica ticking
// this often, and after every security write, that leaves only decisions
// made within one interval before a crash whose snapshot was taken in
// that same interval, and those are caught when the replica that made
// them reconnects.
const EpochInterval = 500 * time.Millisecond

// CreatedBefore reports whether a record created at created must be
// treated as lost under an epoch that began at since: created is known
// (not zero) and before since.
func CreatedBefore(created, since time.Time) bool {
	return !created.IsZero() && created.Before(since)
}

// EpochStarter is implemented by backends whose epoch an operator can move
// forward by hand (`fedbroker storage distrust`): after restoring a backup
// while no broker ran, nothing remembers the newer state, so the operator
// says it. StartEpoch writes a new epoch beginning now, ahead of every
// counter a client may have seen; every replica adopts it at its next
// tick.
type EpochStarter interface {
	StartEpoch(ctx context.Context) (Epoch, error)
}
