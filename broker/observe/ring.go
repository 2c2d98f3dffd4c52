package observe

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// AuditRecord is one audit line kept in memory: its event (the line's
// message), when it was written and its fields as text, in order.
type AuditRecord struct {
	Time   time.Time
	Event  string
	Fields []Field
}

// Field is one key and value of an audit record.
type Field struct{ Key, Value string }

// Get returns the value of the record's field key, "" when absent.
func (r AuditRecord) Get(key string) string {
	for _, f := range r.Fields {
		if f.Key == key {
			return f.Value
		}
	}
	return ""
}

// AuditRing keeps the most recent audit records of this process in
// memory, for the admin console. It is a slog.Handler tee: Tee wraps the
// audit logger's handler so every line written goes to both.
type AuditRing struct {
	mu   sync.Mutex
	buf  []AuditRecord
	next int
	full bool
}

// NewAuditRing keeps the last n records (at least 1).
func NewAuditRing(n int) *AuditRing {
	return &AuditRing{buf: make([]AuditRecord, max(n, 1))}
}

// Add keeps rec, dropping the oldest when full.
func (r *AuditRing) Add(rec AuditRecord) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.buf[r.next] = rec
	r.next = (r.next + 1) % len(r.buf)
	if r.next == 0 {
		r.full = true
	}
}

// Recent returns the records kept, newest first.
func (r *AuditRing) Recent() []AuditRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.next
	if r.full {
		n = len(r.buf)
	}
	out := make([]AuditRecord, 0, n)
	for i := 1; i <= n; i++ {
		out = append(out, r.buf[(r.next-i+len(r.buf))%len(r.buf)])
	}
	return out
}

// Tee returns a handler that keeps every record in the ring and passes it
// on to next (which applies its own level).
func (r *AuditRing) Tee(next slog.Handler) slog.Handler {
	return &teeHandler{ring: r, next: next}
}

// NewAuditTee is NewAudit writing to log and keeping every line in ring.
func NewAuditTee(log *slog.Logger, ring *AuditRing) Audit {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return NewAudit(slog.New(ring.Tee(log.Handler())))
}

type teeHandler struct {
	ring  *AuditRing
	next  slog.Handler
	attrs []slog.Attr // from WithAttrs, flattened
	group string
}

func (h *teeHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *teeHandler) Handle(ctx context.Context, rec slog.Record) error {
	out := AuditRecord{Time: rec.Time, Event: rec.Message}
	add := func(a slog.Attr) bool {
		if a.Key == "audit" && h.group == "" {
			return true
		}
		key := a.Key
		if h.group != "" {
			key = h.group + "." + key
		}
		out.Fields = append(out.Fields, Field{Key: key, Value: valueText(a.Value)})
		return true
	}
	for _, a := range h.attrs {
		if a.Key != "log" {
			add(a)
		}
	}
	rec.Attrs(add)
	h.ring.Add(out)
	if h.next.Enabled(ctx, rec.Level) {
		return h.next.Handle(ctx, rec)
	}
	return nil
}

func (h *teeHandler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append(append([]slog.Attr(nil), h.attrs...), as...)
	c.next = h.next.WithAttrs(as)
	return &c
}

func (h *teeHandler) WithGroup(name string) slog.Handler {
	c := *h
	if c.group != "" {
		name = c.group + "." + name
	}
	c.group = name
	c.next = h.next.WithGroup(name)
	return &c
}

// valueText is v as one line of text.
func valueText(v slog.Value) string {
	v = v.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return v.String()
	case slog.KindTime:
		return v.Time().UTC().Format(time.RFC3339)
	case slog.KindGroup:
		s := ""
		for i, a := range v.Group() {
			if i > 0 {
				s += " "
			}
			s += a.Key + "=" + valueText(a.Value)
		}
		return s
	case slog.KindAny:
		return fmt.Sprintf("%v", v.Any())
	default:
		return v.String()
	}
}
