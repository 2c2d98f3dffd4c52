package ldap_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fedbroker/fedbroker/connectors"
	"github.com/fedbroker/fedbroker/connectors/ldap"
)

// proxy forwards TCP connections to a directory, records what clients
// send, holds each answer back for delay, and counts connections: opened
// (accepts) and still open (live). freeze turns the connections opened so
// far into black holes: they stay open, but nothing goes through them any
// more, as when a firewall forgets an idle connection.
type proxy struct {
	addr    string
	delay   time.Duration
	accepts atomic.Int32
	live    atomic.Int32

	mu     sync.Mutex
	sent   bytes.Buffer
	frozen []*atomic.Bool
}

func startProxy(t *testing.T, target string, delay time.Duration) *proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{addr: l.Addr().String(), delay: delay}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		_ = l.Close()
		p.mu.Lock()
		for _, f := range p.frozen {
			f.Store(false) // frozen connections never end on their own
		}
		p.mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				_ = c.Close()
				continue
			}
			p.accepts.Add(1)
			p.live.Add(1)
			frozen := new(atomic.Bool)
			p.mu.Lock()
			p.frozen = append(p.frozen, frozen)
			p.mu.Unlock()
			var both sync.WaitGroup
			both.Go(func() { // client to directory, recorded before it is sent
				p.pipe(up, c, frozen, p, 0)
			})
			both.Go(func() { // directory to client, delayed
				p.pipe(c, up, frozen, nil, p.delay)
			})
			wg.Go(func() { both.Wait(); p.live.Add(-1) })
		}
	})
	return p
}

// pipe copies src to dst (and to record, when set), each read delay late,
// dropping what it reads while frozen; it closes both ends when done.
func (p *proxy) pipe(dst, src net.Conn, frozen *atomic.Bool, record io.Writer, delay time.Duration) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !frozen.Load() {
			if record != nil {
				_, _ = record.Write(buf[:n])
			}
			time.Sleep(delay)
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	_ = dst.Close()
	_ = src.Close()
}

// freeze makes every connection opened so far a black hole.
func (p *proxy) freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, f := range p.frozen {
		f.Store(true)
	}
}

func (p *proxy) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sent.Write(b)
}

func (p *proxy) Sent() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return bytes.Clone(p.sent.Bytes())
}

// TestNestedGroupFilterSent checks that the in-chain filter goes over the
// wire. slapd does not implement LDAP_MATCHING_RULE_IN_CHAIN (Active
// Directory does): it finds no group, and the sign-in still works.
func TestNestedGroupFilterSent(t *testing.T) {
	p := startProxy(t, directory(t).Addr, 0)
	c := searchConfig(p.addr)
	c.MemberOfAttr = ""
	c.GroupSearch.Nested = true
	id, ok := login(t, open(t, c), "alice", "alice-pw")
	if !ok {
		t.Fatal("alice refused")
	}
	if !equal(id.Claims["groups"], []any{}) {
		t.Logf("groups %v (slapd matched the in-chain filter)", id.Claims["groups"])
	}
	sent := p.Sent()
	for _, want := range []string{"member", "1.2.840.113556.1.4.1941", "uid=alice,ou=people,dc=acme,dc=com"} {
		if !bytes.Contains(sent, []byte(want)) {
			t.Errorf("the connector did not send %q", want)
		}
	}
}

// TestDirectoryDelayed puts a proxy that holds every answer back for
// longer than the timeout between the connector and slapd.
func TestDirectoryDelayed(t *testing.T) {
	d := directory(t)
	c := searchConfig(startProxy(t, d.Addr, 600*time.Millisecond).addr)
	c.Timeout = 200 * time.Millisecond
	start := time.Now()
	_, ok, err := open(t, c).Login(context.Background(), connectors.Scopes{}, "alice", "alice-pw")
	var ue *connectors.UserError
	if ok || !errors.As(err, &ue) || ue.Code != ldap.CodeUnavailable || !errors.Is(err, connectors.ErrUnavailable) {
		t.Errorf("ok %v, err %v; want a UserError wrapping ErrUnavailable", ok, err)
	}
	if el := time.Since(start); el > c.Timeout+time.Second {
		t.Errorf("took %v with a timeout of %v", el, c.Timeout)
	}
	// A delay under the timeout is only slow.
	c = searchConfig(startProxy(t, d.Addr, 20*time.Millisecond).addr)
	if _, ok := login(t, open(t, c), "alice", "alice-pw"); !ok {
		t.Error("alice refused through a slow but timely directory")
	}
}
