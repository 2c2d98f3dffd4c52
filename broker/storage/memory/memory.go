// Package memory is the embedded storage backend: everything lives in one
// process's memory behind one mutex, so every operation is atomic. It suits
// tests and a single-node demo; records are lost on exit and replicas do not
// share them.
//
// Records are kept in their JSON form, as the Redis backend keeps them, so
// results are always fresh copies and claims decode the same way in both
// backends (numbers as float64). Secrets (codes, refresh tokens, session ids)
// are kept only as storage.Hash of the secret. Expired records behave as
// absent at once; every kind is swept from memory by the first operation
// (read or write) after each sweep interval (one minute by default), so an
// idle store holds expired records until it is used again, and a busy one
// holds at most one interval's worth. Pending auth requests are also capped
// (WithMaxAuthRequests, 100,000 by default): a login abandoned at the
// upstream keeps its request until it expires, and past the cap creating a
// request evicts the one that expires first. Deleting an absent session or link
// returns storage.ErrNotFound. After Close every method returns an error
// wrapping storage.ErrUnavailable.
package memory

import (
	"container/heap"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/fedbroker/fedbroker/broker/storage"
)

var _ storage.Storage = (*Store)(nil)

// Option configures a Store.
type Option func(*Store)

// WithClock sets the clock expiry is checked against (default time.Now).
func WithClock(now func() time.Time) Option { return func(s *Store) { s.now = now } }

// WithSweepInterval sets how often, at most, expired records are removed
// from memory (default one minute).
func WithSweepInterval(d time.Duration) Option { return func(s *Store) { s.sweepEvery = d } }

// DefaultMaxAuthRequests is how many pending auth requests a Store keeps
// unless WithMaxAuthRequests says otherwise.
const DefaultMaxAuthRequests = 100_000

// WithMaxAuthRequests caps the pending auth requests the store keeps (n < 1
// means DefaultMaxAuthRequests). Creating one past the cap evicts the
// request that expires first: all pending requests wait for the same kind
// of step, so the one nearest its end is the likeliest abandoned, and the
// per-address sign-in limiter already bounds what one client can create.
func WithMaxAuthRequests(n int) Option { return func(s *Store) { s.maxAuthReqs = n } }

// Store is an in-memory storage.Storage. Its zero value is not usable; call
// New.
type Store struct {
	now         func() time.Time
	sweepEvery  time.Duration
	maxAuthReqs int

	mu         sync.Mutex
	closed     bool
	lastSweep  time.Time
	authReqs   map[string]*areqEntry // by request id
	areqByExp  areqHeap              // the same, earliest expiry first
	codes      map[string]*codeEntry // by Hash(code)
	families   map[string]*famEntry  // by family id
	tombstones map[string]time.Time  // revoked family id → until
	sessions   map[string]record     // by Hash(session id)
	keys       []byte
	keysVer    int64
	keyNotes   storage.Broadcast // key-set subscribers; its own lock, taken after mu or alone
	leases     map[string]lease
	seen       map[seenKey]time.Time
	links      map[string][]byte
	deliveries map[string]storage.Delivery
	replicas   map[string]replicaEntry // by replica id; see replicas.go
}

// record is a JSON-encoded record with its expiry; subject is set for
// sessions.
type record struct {
	data    []byte
	expiry  time.Time
	subject string
}

// areqEntry is a pending auth request, also held in Store.areqByExp.
type areqEntry struct {
	record
	id  string
	idx int // index in areqByExp
}

// areqHeap is a container/heap of auth requests by expiry.
type areqHeap []*areqEntry

func (h areqHeap) Len() int           { return len(h) }
func (h areqHeap) Less(i, j int) bool { return h[i].expiry.Before(h[j].expiry) }
func (h areqHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx, h[j].idx = i, j
}
func (h *areqHeap) Push(x any) {
	e := x.(*areqEntry)
	e.idx = len(*h)
	*h = append(*h, e)
}
func (h *areqHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return e
}

// addAuthReq stores e, first evicting the earliest-expiring requests while
// the store is at its cap; s.mu is held and e.id is not stored.
func (s *Store) addAuthReq(e *areqEntry) {
	for len(s.authReqs) >= s.maxAuthReqs && len(s.areqByExp) > 0 {
		old := heap.Pop(&s.areqByExp).(*areqEntry)
		delete(s.authReqs, old.id)
	}
	s.authReqs[e.id] = e
	heap.Push(&s.areqByExp, e)
}

// removeAuthReq deletes the request id if stored; s.mu is held.
func (s *Store) removeAuthReq(id string) {
	if e, ok := s.authReqs[id]; ok {
		delete(s.authReqs, id)
		heap.Remove(&s.areqByExp, e.idx)
	}
}

type codeEntry struct {
	record                  // expiry only: the code is val
	val    storage.AuthCode // as cloneCode made it
	used   bool
	// familyID replaces the record's FamilyID once RedeemCode consumed
	// the code (see storage.Redemption.FamilyID).
	familyID string
}

// code is a copy of the entry's code with its family id.
func (c *codeEntry) code() (storage.AuthCode, error) {
	rec, err := cloneCode(c.val)
	if c.familyID != "" {
		rec.FamilyID = c.familyID
	}
	return rec, err
}

type famEntry struct {
	val            storage.RefreshFamily // as cloneFamily made it; the times below are current
	subject        string
	current        string // Hash of the current token
	generation     uint64 // rotations so far
	lastUsed       time.Time
	idleExpiry     time.Time
	absoluteExpiry time.Time

	retry retryState // the last rotation, for a retry (see RotateRefresh)
}

type lease struct {
	holder string
	expiry time.Time
}

type seenKey struct{ namespace, id string }

// New returns an empty Store.
func New(opts ...Option) *Store {
	s := &Store{
		now:        time.Now,
		sweepEvery: time.Minute,
		authReqs:   map[string]*areqEntry{},
		codes:      map[string]*codeEntry{},
		families:   map[string]*famEntry{},
		tombstones: map[string]time.Time{},
		sessions:   map[string]record{},
		leases:     map[string]lease{},
		seen:       map[seenKey]time.Time{},
		links:      map[string][]byte{},
		deliveries: map[string]storage.Delivery{},
	}
	for _, o := range opts {
		o(s)
	}
	if s.maxAuthReqs < 1 {
		s.maxAuthReqs = DefaultMaxAuthRequests
	}
	s.lastSweep = s.now()
	return s
}

var errClosed = fmt.Errorf("memory: store closed: %w", storage.ErrUnavailable)

// lock takes the mutex and returns the current time, or errClosed (with the
// mutex released) after Close. It sweeps expired records when due.
func (s *Store) lock() (time.Time, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return time.Time{}, errClosed
	}
	now := s.now()
	if now.Sub(s.lastSweep) >= s.sweepEvery {
		s.sweep(now)
		s.lastSweep = now
	}
	return now, nil
}

func live(now, expiry time.Time) bool { return now.Before(expiry) }

// sweep removes every expired record; s.mu is held.
func (s *Store) sweep(now time.Time) {
	for len(s.areqByExp) > 0 && !live(now, s.areqByExp[0].expiry) {
		e := heap.Pop(&s.areqByExp).(*areqEntry)
		delete(s.authReqs, e.id)
	}
	for k, c := range s.codes {
		if !live(now, c.expiry) {
			delete(s.codes, k)
		}
	}
	for k, f := range s.families {
		if !f.alive(now) {
			delete(s.families, k)
		}
	}
	for k, until := range s.tombstones {
		if !live(now, until) {
			delete(s.tombstones, k)
		}
	}
	for k, r := range s.sessions {
		if !live(now, r.expiry) {
			delete(s.sessions, k)
		}
	}
	for k, l := range s.leases {
		if !live(now, l.expiry) {
			delete(s.leases, k)
		}
	}
	for k, until := range s.seen {
		if !live(now, until) {
			delete(s.seen, k)
		}
	}
}

// Len returns how many records of any kind the store holds in memory,
// expired or not; tests use it to check that sweeping bounds memory.
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.authReqs) + len(s.codes) + len(s.families) + len(s.tombstones) +
		len(s.sessions) + len(s.leases) + len(s.seen) + len(s.links) + len(s.deliveries) +
		len(s.replicas)
}

func encode(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("memory: encode: %w", err)
	}
	return b, nil
}

func decode[T any](b []byte) (T, error) {
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		return v, fmt.Errorf("memory: corrupt record: %v: %w", err, storage.ErrUnavailable)
	}
	return v, nil
}

// familyOf returns the family id of a refresh token "<familyID>.<secret>",
// or false when the token does not have that form (both parts non-empty,
// exactly one '.').
func familyOf(token string) (string, bool) {
	id, secret, ok := strings.Cut(token, ".")
	if !ok || id == "" || secret == "" || strings.IndexByte(secret, '.') >= 0 {
		return "", false
	}
	return id, true
}

// Ping reports an error after Close.
func (s *Store) Ping(ctx context.Context) error {
	if _, err := s.lock(); err != nil {
		return err
	}
	s.mu.Unlock()
	return nil
}

// Since is always zero: the store lives and dies with the process, so it
// never holds part of its state.
func (s *Store) Since() time.Time { return time.Time{} }

// Heartbeat does nothing: the store cannot lose or roll back state alone.
func (s *Store) Heartbeat(ctx context.Context) error { return nil }

// Close drops every record; later calls fail with storage.ErrUnavailable.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.authReqs, s.areqByExp = nil, nil
	s.codes, s.families, s.sessions, s.links = nil, nil, nil, nil
	s.tombstones, s.leases, s.seen, s.keys = nil, nil, nil, nil
	s.deliveries, s.replicas = nil, nil
	s.keyNotes.Close()
	return nil
}
