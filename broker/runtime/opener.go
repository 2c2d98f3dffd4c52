package runtime

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/fedbroker/fedbroker/connectors"
)

// RetryUnreachable is how often, at most, a connector or workload issuer
// whose upstream was unreachable at load time is tried again.
const RetryUnreachable = 15 * time.Second

// opener opens a connector or workload issuer on first use, for upstreams
// that could not be reached when the configuration was loaded. The broker
// starts anyway — the other connectors, the break-glass accounts among
// them, keep working.
type opener[T any] struct {
	open func(ctx context.Context) (T, error)
	now  func() time.Time

	mu      sync.Mutex
	impl    T
	ok      bool
	lastTry time.Time
	lastErr error
}

func (o *opener[T]) get(ctx context.Context) (T, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.ok {
		return o.impl, nil
	}
	if now := o.now(); o.lastErr == nil || now.Sub(o.lastTry) >= RetryUnreachable {
		o.lastTry = now
		impl, err := o.open(ctx)
		if err == nil {
			o.impl, o.ok, o.lastErr = impl, true, nil
			return impl, nil
		}
		o.lastErr = err
	}
	var zero T
	return zero, &connectors.UserError{Code: "upstream_unavailable", Message: "The identity provider could not be reached. Please try again in a moment.",
		Err: fmt.Errorf("runtime: not opened yet: %w: %w", connectors.ErrUnavailable, o.lastErr)}
}

// opened returns what was opened, and whether it was.
func (o *opener[T]) opened() (T, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.impl, o.ok
}

// openNowOrLater opens with open; when that fails because the upstream is
// unavailable and defer is set, it returns an opener that tries again on
// use instead of an error.
func openNowOrLater[T any](ctx context.Context, open func(context.Context) (T, error), deferUnreachable bool, now func() time.Time) (T, *opener[T], error) {
	impl, err := open(ctx)
	if err != nil && deferUnreachable && isUnavailable(err) {
		return impl, &opener[T]{open: open, now: now, lastErr: err, lastTry: now()}, nil
	}
	return impl, nil, err
}
