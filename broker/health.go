package broker

import (
	"sync"
	"time"
)

// connectorHealth remembers, per connector, the last sign-in that worked and
// the last that failed upstream. It is per replica and for operators only.
type connectorHealth struct {
	mu sync.Mutex
	m  map[string]*healthRecord
}

type healthRecord struct {
	LastSuccess time.Time `json:"last_success,omitzero"`
	LastFailure time.Time `json:"last_failure,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
	Successes   int64     `json:"successes"`
	Failures    int64     `json:"failures"`
}

func newConnectorHealth() *connectorHealth {
	return &connectorHealth{m: make(map[string]*healthRecord)}
}

func (h *connectorHealth) record(id string, now time.Time, code string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	r, ok := h.m[id]
	if !ok {
		r = &healthRecord{}
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

func (h *connectorHealth) get(id string) healthRecord {
	h.mu.Lock()
	defer h.mu.Unlock()
	if r, ok := h.m[id]; ok {
		return *r
	}
	return healthRecord{}
}
