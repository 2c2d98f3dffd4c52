package ldap_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/fedbroker/fedbroker/connectors"
	"github.com/fedbroker/fedbroker/connectors/ldap"
)

// proxy forwards TCP connections to a directory, records what clients
// send, and holds each answer back for delay.
type proxy struct {
	addr  string
	delay time.Duration

	mu   sync.Mutex
	sent bytes.Buffer
}

func startProxy(t *testing.T, target string, delay time.Duration) *proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{addr: l.Addr().String(), delay: delay}
	var wg sync.WaitGroup
	t.Cleanup(func() { _ = l.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
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
			wg.Add(2)
			go func() { // client to directory, recorded before it is sent
				defer wg.Done()
				_, _ = io.Copy(io.MultiWriter(p, up), c)
				_ = up.Close()
			}()
			go func() { // directory to client, delayed
				defer wg.Done()
				buf := make([]byte, 32<<10)
				for {
					n, err := up.Read(buf)
					if n > 0 {
						time.Sleep(p.delay)
						if _, werr := c.Write(buf[:n]); werr != nil {
							break
						}
					}
					if err != nil {
						break
					}
				}
				_ = c.Close()
			}()
		}
	}()
	return p
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
