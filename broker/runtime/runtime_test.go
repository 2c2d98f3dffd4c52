package runtime

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/connectors"
)

func TestMatchRedirect(t *testing.T) {
	cl := &Client{Client: config.Client{Public: true}, redirects: toSet([]string{"http://127.0.0.1:9999/cb", "https://app.example/cb", "http://localhost/cb"})}
	for uri, want := range map[string]bool{
		"https://app.example/cb":            true,
		"http://127.0.0.1:9999/cb":          true,
		"http://127.0.0.1:41234/cb":         true, // any port on loopback (RFC 8252 §7.3)
		"http://localhost:5000/cb":          true,
		"https://app.example/cb/":           false,
		"https://app.example:444/cb":        false,
		"http://127.0.0.1:9999/other":       false,
		"http://127.0.0.1:9999/cb#frag":     false,
		"http://user@127.0.0.1:9999/cb":     false,
		"http://127.0.0.1.evil.example/cb":  false,
		"https://127.0.0.1:9999/cb":         false,
		"http://127.0.0.1:9999/cb?extra=1":  false,
		"javascript:alert(1)//127.0.0.1/cb": false,
	} {
		if got := cl.MatchRedirect(uri); got != want {
			t.Errorf("MatchRedirect(%q) = %v, want %v", uri, got, want)
		}
	}
}

func parse(t *testing.T, yml string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte("issuer: https://broker.test\n"+yml), func(string) string { return "" })
	if err != nil {
		t.Fatalf("config.Parse: %v", err)
	}
	return cfg
}

// TestMappingProblemsHaveOnePath: a named mapping's problems are reported
// once, under mappings.NAME, however many connectors use it; the dry run
// reports the same paths.
func TestMappingProblemsHaveOnePath(t *testing.T) {
	cfg := parse(t, `
connectors:
  - {id: a, type: local, mapping: broken, config: {users: []}}
  - {id: b, type: local, mapping: broken, config: {users: []}}
mappings:
  broken:
    subject: 'claims.nope +'
clients:
  - {id: app, public: true, redirect_uris: ["http://127.0.0.1/cb"]}
`)
	err := Check(context.Background(), cfg, Deps{}, true)
	var ps config.Errors
	if !errors.As(err, &ps) {
		t.Fatalf("Check = %v, want config.Errors", err)
	}
	n := 0
	for _, p := range ps {
		if strings.HasPrefix(p.Path, "mappings.broken") {
			n++
		}
	}
	if n != 1 {
		t.Errorf("problems = %v; want the broken mapping reported once under mappings.broken", ps)
	}
	_, _, err = CompileMapping(cfg, "b")
	if err == nil || !strings.HasPrefix(err.Error(), "mappings.broken") {
		t.Errorf("CompileMapping = %v; want the problem at mappings.broken", err)
	}
	if _, _, err := CompileMapping(cfg, "ghost"); err == nil {
		t.Error("CompileMapping(unknown connector) succeeded")
	}
}

// TestOpenerRetriesAtMostEveryInterval: a connector whose upstream was down
// at load is tried again on use, but not more often than RetryUnreachable.
func TestOpenerRetriesAtMostEveryInterval(t *testing.T) {
	now := time.Unix(1700000000, 0)
	var tries atomic.Int32
	up := false
	o := &opener[connectors.Connector]{now: func() time.Time { return now }, lastErr: connectors.ErrUnavailable, lastTry: now,
		open: func(context.Context) (connectors.Connector, error) {
			tries.Add(1)
			if !up {
				return nil, connectors.ErrUnavailable
			}
			return struct{}{}, nil
		}}
	c := &Connector{lazy: o}
	for range 5 {
		if _, err := c.Open(context.Background()); !errors.Is(err, connectors.ErrUnavailable) {
			t.Fatalf("Open = %v, want ErrUnavailable", err)
		}
	}
	if tries.Load() != 0 {
		t.Fatalf("tried %d times within the interval, want 0", tries.Load())
	}
	now = now.Add(RetryUnreachable)
	up = true
	if impl, err := c.Open(context.Background()); err != nil || impl == nil {
		t.Fatalf("Open after the interval = %v, %v", impl, err)
	}
	if c.opened() == nil || tries.Load() != 1 {
		t.Fatalf("tries = %d, opened = %v", tries.Load(), c.opened())
	}
}
