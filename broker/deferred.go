package broker

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/fedbroker/fedbroker/connectors"
)

// deferredConnector stands in for a browser connector whose upstream could
// not be reached when the configuration was loaded (discovery failed). The
// broker starts anyway — the other connectors, the break-glass accounts
// among them, keep working — and the connector is opened on first use,
// retried at most every retryEvery while the upstream stays away.
type deferredConnector struct {
	open       func(ctx context.Context) (any, error)
	retryEvery time.Duration
	now        func() time.Time

	mu       sync.Mutex
	impl     any
	lastTry  time.Time
	lastErr  error
	onOpened func(any)
}

var (
	_ connectors.CallbackConnector = (*deferredConnector)(nil)
	_ connectors.RefreshConnector  = (*deferredConnector)(nil)
	_ HealthChecker                = (*deferredConnector)(nil)
)

func (d *deferredConnector) get(ctx context.Context) (any, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.impl != nil {
		return d.impl, nil
	}
	if now := d.now(); d.lastErr == nil || now.Sub(d.lastTry) >= d.retryEvery {
		d.lastTry = now
		impl, err := d.open(ctx)
		if err == nil {
			d.impl, d.lastErr = impl, nil
			if d.onOpened != nil {
				d.onOpened(impl)
			}
			return impl, nil
		}
		d.lastErr = err
	}
	return nil, &connectors.UserError{Code: "upstream_unavailable", Message: "The identity provider could not be reached. Please try again in a moment.",
		Err: fmt.Errorf("broker: connector not opened yet: %w: %w", connectors.ErrUnavailable, d.lastErr)}
}

func (d *deferredConnector) callback(ctx context.Context) (connectors.CallbackConnector, error) {
	impl, err := d.get(ctx)
	if err != nil {
		return nil, err
	}
	cc, ok := impl.(connectors.CallbackConnector)
	if !ok {
		return nil, fmt.Errorf("broker: connector %T is not a browser redirect connector", impl)
	}
	return cc, nil
}

func (d *deferredConnector) LoginURL(ctx context.Context, s connectors.Scopes, callbackURL, state string) (string, []byte, error) {
	cc, err := d.callback(ctx)
	if err != nil {
		return "", nil, err
	}
	return cc.LoginURL(ctx, s, callbackURL, state)
}

func (d *deferredConnector) HandleCallback(ctx context.Context, s connectors.Scopes, connState []byte, r *http.Request) (connectors.Identity, error) {
	cc, err := d.callback(ctx)
	if err != nil {
		return connectors.Identity{}, err
	}
	return cc.HandleCallback(ctx, s, connState, r)
}

func (d *deferredConnector) Refresh(ctx context.Context, s connectors.Scopes, id connectors.Identity) (connectors.Identity, error) {
	impl, err := d.get(ctx)
	if err != nil {
		return connectors.Identity{}, err
	}
	rc, ok := impl.(connectors.RefreshConnector)
	if !ok {
		return id, nil
	}
	return rc.Refresh(ctx, s, id)
}

// CheckHealth opens the connector if it can, then asks it.
func (d *deferredConnector) CheckHealth(ctx context.Context) error {
	impl, err := d.get(ctx)
	if err != nil {
		return err
	}
	if hc, ok := impl.(HealthChecker); ok {
		return hc.CheckHealth(ctx)
	}
	return nil
}
