package ldap_test

import (
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/fedbroker/fedbroker/connectors"
	"github.com/fedbroker/fedbroker/connectors/ldap"
)

// openWith opens c with opts and closes it when the test ends.
func openWith(t *testing.T, c *ldap.Config, opts connectors.Options) *ldap.Connector {
	t.Helper()
	if ps := c.Validate(); len(ps) > 0 {
		t.Fatalf("Validate: %v", ps)
	}
	impl, err := c.Open(context.Background(), "corp", opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = impl.(*ldap.Connector).Close() })
	return impl.(*ldap.Connector)
}

func wantGroups(t *testing.T, id connectors.Identity, want ...any) {
	t.Helper()
	if !equal(id.Claims["groups"], want) {
		t.Fatalf("groups %v, want %v", id.Claims["groups"], want)
	}
}

// TestPoolReusesConnections: sign-ins share the connections bound as
// bind_dn, whatever their outcome (a wrong password, an unknown user), and
// read groups as bind_dn each time; a refresh uses them too.
func TestPoolReusesConnections(t *testing.T) {
	p := startProxy(t, directory(t).Addr, 0)
	conn := open(t, searchConfig(p.addr))
	for range 5 {
		id, ok := login(t, conn, "alice", "alice-pw")
		if !ok {
			t.Fatal("alice refused")
		}
		wantGroups(t, id, "admins", "eng")
	}
	if _, ok := login(t, conn, "alice", "wrong"); ok {
		t.Fatal("a wrong password accepted")
	}
	if _, ok := login(t, conn, "nobody", "pw"); ok {
		t.Fatal("an unknown user accepted")
	}
	id, ok := login(t, conn, "bob", "bob-pw")
	if !ok {
		t.Fatal("bob refused")
	}
	wantGroups(t, id, "eng")
	if _, err := conn.Refresh(context.Background(), connectors.Scopes{}, connectors.Identity{Subject: id.Subject, ConnectorData: id.ConnectorData}); err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	if n := p.accepts.Load(); n != 1 {
		t.Fatalf("9 calls opened %d connections, want 1", n)
	}
}

// TestPoolConnectionLost: a kept connection that stopped carrying
// anything (a firewall dropped it while idle) costs the sign-in one
// timeout, then the sign-in goes on over a new connection; a kept
// connection the directory closed is not used at all.
func TestPoolConnectionLost(t *testing.T) {
	p := startProxy(t, directory(t).Addr, 0)
	c := searchConfig(p.addr)
	c.Timeout = 300 * time.Millisecond
	conn := open(t, c)
	if _, ok := login(t, conn, "alice", "alice-pw"); !ok {
		t.Fatal("alice refused")
	}
	p.freeze()
	id, ok := login(t, conn, "alice", "alice-pw")
	if !ok {
		t.Fatal("alice refused after the kept connection was lost")
	}
	wantGroups(t, id, "admins", "eng")
	if n := p.accepts.Load(); n != 2 {
		t.Fatalf("%d connections, want 2", n)
	}
}

// TestPoolKeepsIdleConnections: a kept connection outlives the operation
// timeout: the deadline of its last operation does not end it while it
// waits in the pool.
func TestPoolKeepsIdleConnections(t *testing.T) {
	p := startProxy(t, directory(t).Addr, 0)
	c := searchConfig(p.addr)
	c.Timeout = 200 * time.Millisecond
	conn := open(t, c)
	login(t, conn, "alice", "alice-pw")
	time.Sleep(3 * c.Timeout)
	login(t, conn, "alice", "alice-pw")
	if n := p.accepts.Load(); n != 1 {
		t.Fatalf("a connection idle for longer than timeout was not kept: %d connections, want 1", n)
	}
}

// TestPoolIdleTimeout: a connection kept longer than pool_idle_timeout is
// closed, not used.
func TestPoolIdleTimeout(t *testing.T) {
	p := startProxy(t, directory(t).Addr, 0)
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	c := searchConfig(p.addr)
	c.PoolIdleTimeout = 30 * time.Second
	conn := openWith(t, c, connectors.Options{Now: clock})
	login(t, conn, "alice", "alice-pw")
	mu.Lock()
	now = now.Add(29 * time.Second)
	mu.Unlock()
	login(t, conn, "alice", "alice-pw")
	if n := p.accepts.Load(); n != 1 {
		t.Fatalf("within the idle timeout: %d connections, want 1", n)
	}
	mu.Lock()
	now = now.Add(31 * time.Second)
	mu.Unlock()
	login(t, conn, "alice", "alice-pw")
	if n := p.accepts.Load(); n != 2 {
		t.Fatalf("after the idle timeout: %d connections, want 2", n)
	}
	waitFor(t, "the stale connection closed", func() bool { return p.live.Load() == 1 })
}

// TestPoolSize: pool_size bounds what is kept after a burst; 0 keeps
// nothing; a direct bind (no bind_dn) never keeps its connection, which
// ends bound as the user.
func TestPoolSize(t *testing.T) {
	d := directory(t)
	p := startProxy(t, d.Addr, 0)
	c := searchConfig(p.addr)
	two := 2
	c.PoolSize = &two
	conn := open(t, c)
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Go(func() {
			user, pw := "alice", "alice-pw"
			if i%2 == 1 {
				user, pw = "bob", "bob-pw"
			}
			if _, ok, err := conn.Login(context.Background(), connectors.Scopes{}, user, pw); !ok || err != nil {
				t.Errorf("concurrent sign-in of %s: %v, %v", user, ok, err)
			}
		})
	}
	wg.Wait()
	waitFor(t, "at most pool_size connections left open", func() bool { return p.live.Load() <= 2 })

	zero := 0
	p0 := startProxy(t, d.Addr, 0)
	c0 := searchConfig(p0.addr)
	c0.PoolSize = &zero
	conn0 := open(t, c0)
	for range 3 {
		login(t, conn0, "alice", "alice-pw")
	}
	if n := p0.accepts.Load(); n != 3 {
		t.Errorf("pool_size 0: %d connections for 3 sign-ins, want 3", n)
	}

	pd := startProxy(t, d.Addr, 0)
	cd := &ldap.Config{
		Host:           pd.addr,
		TLS:            ldap.TLSNone,
		UserDNTemplate: "uid={username},ou=people,dc=acme,dc=com",
		IDAttr:         "entryUUID",
		EmailAttr:      "mail",
	}
	connd := open(t, cd)
	for range 2 {
		if _, ok := login(t, connd, "alice", "alice-pw"); !ok {
			t.Fatal("alice refused by direct bind")
		}
	}
	if n := pd.accepts.Load(); n != 2 {
		t.Errorf("direct bind: %d connections for 2 sign-ins, want 2", n)
	}
}

// TestPoolClose: Close closes the kept connections; the connector still
// signs people in afterwards, one connection each.
func TestPoolClose(t *testing.T) {
	p := startProxy(t, directory(t).Addr, 0)
	conn := open(t, searchConfig(p.addr))
	login(t, conn, "alice", "alice-pw")
	if err := conn.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the kept connection closed", func() bool { return p.live.Load() == 0 })
	if _, ok := login(t, conn, "alice", "alice-pw"); !ok {
		t.Fatal("alice refused after Close")
	}
	waitFor(t, "the connection after Close closed too", func() bool { return p.live.Load() == 0 })
}

// TestPoolCancelled: a sign-in whose context ends mid-way does not give
// its connection back.
func TestPoolCancelled(t *testing.T) {
	d := directory(t)
	p := startProxy(t, d.Addr, 300*time.Millisecond)
	conn := open(t, searchConfig(p.addr))
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, ok, err := conn.Login(ctx, connectors.Scopes{}, "alice", "alice-pw")
	if ok || !errors.Is(err, connectors.ErrUnavailable) {
		t.Fatalf("cancelled sign-in: %v, %v; want ErrUnavailable", ok, err)
	}
	waitFor(t, "the cancelled sign-in's connection closed", func() bool { return p.live.Load() == 0 })
}

func TestPoolConfig(t *testing.T) {
	neg, huge := -1, 1000
	for name, tc := range map[string]struct {
		mutate func(*ldap.Config)
		path   string
	}{
		"negative pool_size":         {func(c *ldap.Config) { c.PoolSize = &neg }, "pool_size"},
		"huge pool_size":             {func(c *ldap.Config) { c.PoolSize = &huge }, "pool_size"},
		"tiny pool_idle_timeout":     {func(c *ldap.Config) { c.PoolIdleTimeout = time.Millisecond }, "pool_idle_timeout"},
		"a day of pool_idle_timeout": {func(c *ldap.Config) { c.PoolIdleTimeout = 24 * time.Hour }, "pool_idle_timeout"},
	} {
		c := searchConfig("127.0.0.1:389")
		tc.mutate(c)
		ps := c.Validate()
		if len(ps) != 1 || ps[0].Path != tc.path {
			t.Errorf("%s: %v, want one problem at %s", name, ps, tc.path)
		}
	}
}

// waitFor polls cond for up to ten seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var _ io.Closer = (*ldap.Connector)(nil)
