package e2e

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fedbroker/fedbroker/broker"
	"github.com/fedbroker/fedbroker/broker/config"
)

// The tests in this file run brokers in the test process through
// broker.Start, the code `fedbroker serve` runs, because they need what a
// child process cannot give: a rotation period below the configuration's
// one-hour minimum, or the goroutine count.

// startInProcess starts a broker like `fedbroker serve` does and returns
// it; rotation, when non-zero, overrides signing.rotation_period after
// validation.
func startInProcess(t *testing.T, cfg brokerConfig, rotation time.Duration) *broker.Instance {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:1" // not listened on: a handler is served instead
	}
	if cfg.Issuer == "" {
		cfg.Issuer = "http://" + cfg.Addr
	}
	c, err := config.Parse([]byte(cfg.yaml()), func(string) string { return "" })
	if err != nil {
		t.Fatalf("config.Parse: %v", err)
	}
	if rotation != 0 {
		c.Signing.RotationPeriod = rotation
	}
	ctx, cancel := context.WithCancel(context.Background())
	in, err := broker.Start(ctx, c, slog.New(slog.DiscardHandler))
	if err != nil {
		cancel()
		t.Fatalf("broker.Start: %v", err)
	}
	t.Cleanup(func() { in.Close(); cancel() })
	return in
}

// delayProxy is a TCP proxy that holds every chunk of bytes, both ways, for
// the current delay before passing it on.
type delayProxy struct {
	ln     net.Listener
	target string
	delay  atomic.Int64 // nanoseconds
	wg     sync.WaitGroup
	conns  atomic.Int64 // open client connections
}

func startDelayProxy(t *testing.T, target string) *delayProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &delayProxy{ln: ln, target: target}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Add(1)
			go p.serve(c)
		}
	}()
	t.Cleanup(func() { ln.Close(); p.wg.Wait() })
	return p
}

func (p *delayProxy) Addr() string { return p.ln.Addr().String() }

func (p *delayProxy) serve(c net.Conn) {
	defer p.wg.Done()
	p.conns.Add(1)
	defer p.conns.Add(-1)
	u, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				time.Sleep(time.Duration(p.delay.Load()))
				if _, werr := dst.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		done <- struct{}{}
	}
	go pipe(u, c)
	go pipe(c, u)
	<-done
	c.Close()
	u.Close()
	<-done
}

// discard reads and closes a response body.
func discard(resp *http.Response) {
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}
