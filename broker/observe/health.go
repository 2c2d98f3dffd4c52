package observe

import (
	"sync"
	"time"
)

// Health remembers, per connector, the last sign-in that worked and the
// last that failed upstream. It is per replica and for operators only.
type Health struct {
	mu sync.Mutex
	m  map[string]*HealthRecord
}

// HealthRecord is one connector's recent sign-in history.
type HealthRecord struct {
	LastSuccess time.Time `json:"last_success,omitzero"`
	LastFailure time.Time `json:"last_failure,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
	Successes   int64     `json:"successes"`
	Failures    int64     `json:"failures"`
}

// NewHealth returns an empty record book.
func NewHealth() *Health {
	return &Health{m: make(map[string]*HealthRecord)}
}

// Record notes a sign-in at connector id: a success when code is empty,
// else a failure with that code.
func (h *Health) Record(id string, now time.Time, code string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	r, ok := h.m[id]
	if !ok {
		r = &HealthRecord{}
		h.m[id] = r
	}
	if code == "" {
		r.LastSuccess = now
		r.Successes++
		return
	}
	r.LastFailure = now
	r.LastError = code
	r.Failures++
}

// Get returns connector id's record (zero when it has none).
func (h *Health) Get(id string) HealthRecord {
	h.mu.Lock()
	defer h.mu.Unlock()
	if r, ok := h.m[id]; ok {
		return *r
	}
	return HealthRecord{}
}
