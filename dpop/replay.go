package dpop

import (
	"container/heap"
	"sync"
	"time"
)

// ReplayCache remembers proof identifiers until they expire, for a server
// that serves a URL alone. It holds at most max entries: when full, the
// entry expiring soonest is forgotten first. Size it for the proofs a
// server accepts within the skew window; a replay of a forgotten entry
// would pass. It is safe for concurrent use.
type ReplayCache struct {
	mu    sync.Mutex
	max   int
	byJTI map[string]*replayEntry
	order expiryHeap
	now   func() time.Time
}

type replayEntry struct {
	jti   string
	until time.Time
}

// NewReplayCache returns an empty cache holding at most max identifiers
// (at least one).
func NewReplayCache(max int) *ReplayCache {
	if max < 1 {
		max = 1
	}
	return &ReplayCache{max: max, byJTI: map[string]*replayEntry{}, now: time.Now}
}

// Seen reports whether jti was recorded before and its record lasts
// beyond now. Otherwise it records jti until until, and reports false: the
// proof is fresh. until is when a proof with this jti stops being accepted
// anyway (its iat plus the skew).
func (c *ReplayCache) Seen(jti string, until time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	for len(c.order) > 0 && !c.order[0].until.After(now) {
		e := heap.Pop(&c.order).(*replayEntry)
		delete(c.byJTI, e.jti)
	}
	if _, ok := c.byJTI[jti]; ok {
		return true
	}
	if !until.After(now) {
		// Expired already: no proof with it can be accepted again.
		return false
	}
	for len(c.order) >= c.max {
		e := heap.Pop(&c.order).(*replayEntry)
		delete(c.byJTI, e.jti)
	}
	e := &replayEntry{jti: jti, until: until}
	heap.Push(&c.order, e)
	c.byJTI[jti] = e
	return false
}

// Len returns the number of identifiers recorded, expired ones included
// until the next Seen.
func (c *ReplayCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.order)
}

// expiryHeap orders entries soonest-expiring first.
type expiryHeap []*replayEntry

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].until.Before(h[j].until) }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }

func (h *expiryHeap) Push(x any) {
	*h = append(*h, x.(*replayEntry))
}

func (h *expiryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return e
}
