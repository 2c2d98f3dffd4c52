package oidc

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/fedbroker/fedbroker/connectors"
	"github.com/fedbroker/fedbroker/connectors/testidp"
)

const callbackURL = "https://broker.example/callback/up"

// clock is a settable test clock, offset from real time.
type clock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset += d
}

func newIdP(t *testing.T, opts testidp.Options) *testidp.IdP {
	t.Helper()
	idp := testidp.New(opts)
	t.Cleanup(idp.Close)
	idp.SetUser(testidp.User{Subject: "u1", Claims: map[string]any{
		"email": "ada@example.com", "email_verified": true, "name": "Ada",
	}})
	return idp
}

func baseConfig(idp *testidp.IdP) Config {
	return Config{Issuer: idp.URL(), ClientID: idp.ClientID(), ClientSecret: idp.ClientSecret()}
}

func open(t *testing.T, cfg Config, clk *clock) *Connector {
	t.Helper()
	if errs := cfg.Validate(); len(errs) > 0 {
		t.Fatalf("Validate() = %v", errs)
	}
	opts := connectors.Options{HTTPClient: &http.Client{}, CallbackURL: callbackURL}
	if clk != nil {
		opts.Now = clk.Now
	}
	impl, err := cfg.Open(context.Background(), "up", opts)
	if err != nil {
		t.Fatalf("Open() error = %v", err)
	}
	return impl.(*Connector)
}

// login runs a whole sign-in through c.
func login(t *testing.T, c *Connector) (connectors.Identity, error) {
	t.Helper()
	ctx := context.Background()
	u, st, err := c.LoginURL(ctx, connectors.Scopes{}, callbackURL, "state-1")
	if err != nil {
		t.Fatalf("LoginURL() error = %v", err)
	}
	r, err := testidp.CallbackRequest(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.URL.Query().Get("state"); got != "state-1" {
		t.Fatalf("callback state = %q, want state-1", got)
	}
	return c.HandleCallback(ctx, connectors.Scopes{}, st, r)
}

// wantCode fails t unless err is a *connectors.UserError with code.
func wantCode(t *testing.T, err error, code string) *connectors.UserError {
	t.Helper()
	var ue *connectors.UserError
	if !errors.As(err, &ue) {
		t.Fatalf("error = %v (%T), want *connectors.UserError with code %q", err, err, code)
	}
	if ue.Code != code {
		t.Fatalf("error code = %q (%v), want %q", ue.Code, err, code)
	}
	if ue.Message == "" {
		t.Fatalf("error %v has an empty Message", err)
	}
	return ue
}
