// Package runtimetest builds a compiled configuration with real keys and a
// memory store, so the flow packages (tokens, clientauth, grants,
// authflow) can be tested without HTTP.
package runtimetest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/keys"
	"github.com/fedbroker/fedbroker/broker/runtime"
	"github.com/fedbroker/fedbroker/broker/storage"
	"github.com/fedbroker/fedbroker/broker/storage/memory"
)

// Issuer is the fixture's issuer URL.
const Issuer = "https://broker.test"

// Secrets of the fixture's accounts and clients.
const (
	AlicePassword = "correct horse battery staple"
	SvcSecret     = "s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t"
)

// Config is the fixture's configuration; %s are filled by New. Clients:
// app (public, PKCE), svc (confidential, code + refresh + client
// credentials), and the local connector with alice.
const Config = `
issuer: %s
connectors:
  - id: local
    type: local
    name: Break-glass accounts
    config:
      users:
        - username: alice
          password_hash: %q
          email: alice@acme.com
          name: Alice Example
          groups: [eng, admins]
clients:
  - id: app
    name: Example App
    public: true
    redirect_uris: ["http://127.0.0.1:9999/cb"]
    post_logout_redirect_uris: ["http://127.0.0.1:9999/bye"]
    audiences: [api.acme.com]
  - id: svc
    name: Confidential Service
    secret_hash: %q
    redirect_uris: ["https://svc.example.com/callback"]
    grant_types: [authorization_code, refresh_token, client_credentials]
    scopes: [openid, profile, email, groups, offline_access, read]
    audiences: [api.acme.com, billing.acme.com]
`

// Clock is a settable test clock.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock at t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// Fixture is a compiled configuration with its storage, keys and clock.
type Fixture struct {
	Config  *config.Config
	Runtime *runtime.Runtime
	Store   storage.Storage
	Keys    *keys.Manager
	Clock   *Clock
}

var hashes = sync.OnceValues(func() (string, string) {
	pw, err := bcrypt.GenerateFromPassword([]byte(AlicePassword), bcrypt.MinCost)
	if err != nil {
		panic(err)
	}
	sh, err := config.HashSecret(SvcSecret)
	if err != nil {
		panic(err)
	}
	return string(pw), sh
})

// New compiles the fixture's Config with extra top-level YAML appended
// (workloads:, mappings:, ...), changed by mutate when not nil.
func New(t testing.TB, extra string, mutate func(*config.Config)) *Fixture {
	t.Helper()
	pw, sh := hashes()
	cfg, err := config.Parse(append(fmt.Appendf(nil, Config, Issuer, pw, sh), extra...), func(string) string { return "" })
	if err != nil {
		t.Fatalf("config.Parse: %v", err)
	}
	if mutate != nil {
		mutate(cfg)
	}
	clk := NewClock(time.Now().Truncate(time.Second))
	store := memory.New(memory.WithClock(clk.Now))
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	km, err := keys.New(ctx, store, keys.Options{Algorithm: cfg.Signing.Algorithm, Algorithms: cfg.Signing.Algorithms, MaxTokenLifetime: 5 * time.Minute, Now: clk.Now})
	if err != nil {
		t.Fatalf("keys.New: %v", err)
	}
	rt, err := runtime.Compile(ctx, cfg, runtime.Deps{Issuer: cfg.Issuer, Now: clk.Now, Algorithms: km.Algorithms(), ReplayCache: store, DeferUnreachable: true})
	if err != nil {
		t.Fatalf("runtime.Compile: %v", err)
	}
	t.Cleanup(rt.Close)
	return &Fixture{Config: cfg, Runtime: rt, Store: store, Keys: km, Clock: clk}
}

// Client returns the fixture's client id, failing the test when missing.
func (f *Fixture) Client(t testing.TB, id string) *runtime.Client {
	t.Helper()
	cl, ok := f.Runtime.Client(id)
	if !ok {
		t.Fatalf("no client %q", id)
	}
	return cl
}
