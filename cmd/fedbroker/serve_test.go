package main

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestListenerTimeouts: both listeners bound how long a client may take to
// send its request, how long a response may take, and how long a
// keep-alive connection may sit idle, so that idle or slow connections
// cannot pile up on either (the admin listener had only a header timeout).
func TestListenerTimeouts(t *testing.T) {
	h := http.NotFoundHandler()
	log := slog.New(slog.DiscardHandler)
	for name, srv := range map[string]*http.Server{
		"main":  newMainServer(h, log),
		"admin": newAdminServer(h, log),
	} {
		for field, d := range map[string]time.Duration{
			"ReadHeaderTimeout": srv.ReadHeaderTimeout,
			"ReadTimeout":       srv.ReadTimeout,
			"WriteTimeout":      srv.WriteTimeout,
			"IdleTimeout":       srv.IdleTimeout,
		} {
			if d <= 0 || d > 5*time.Minute {
				t.Errorf("%s listener: %s = %s, want set and at most 5m", name, field, d)
			}
		}
		if srv.ReadHeaderTimeout > srv.ReadTimeout {
			t.Errorf("%s listener: ReadHeaderTimeout %s exceeds ReadTimeout %s", name, srv.ReadHeaderTimeout, srv.ReadTimeout)
		}
		if srv.MaxHeaderBytes <= 0 || srv.MaxHeaderBytes > 1<<20 {
			t.Errorf("%s listener: MaxHeaderBytes = %d, want set and at most 1 MiB", name, srv.MaxHeaderBytes)
		}
		if srv.Handler == nil || srv.ErrorLog == nil {
			t.Errorf("%s listener: Handler or ErrorLog not set", name)
		}
	}
}

// TestListenerClosesIdleConnections runs a listener built the way both
// listeners are, with short timeouts, and shows that the server hangs up
// on a keep-alive connection left idle after a request and on a client
// that never finishes its request headers.
func TestListenerClosesIdleConnections(t *testing.T) {
	// Read and Write are long, so that only Idle can close the idle
	// connection in time (net/http falls back to ReadTimeout for idle
	// connections, and without either keeps them open for ever).
	to := listenerTimeouts{ReadHeader: 150 * time.Millisecond, Read: time.Minute, Write: time.Minute, Idle: 200 * time.Millisecond}
	srv := newHTTPServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }), slog.New(slog.DiscardHandler), to)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	// closedWithin fails unless the server closes conn within limit.
	closedWithin := func(t *testing.T, conn net.Conn, r *bufio.Reader, limit time.Duration) {
		t.Helper()
		start := time.Now()
		_ = conn.SetReadDeadline(start.Add(limit))
		_, err := r.ReadByte()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("connection still open after %s", limit)
		}
		if err == nil {
			t.Fatal("server sent more bytes on an idle connection")
		}
	}

	t.Run("idle keep-alive", func(t *testing.T) {
		conn, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		r := bufio.NewReader(conn)
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.Close {
			t.Fatal("server closed the connection after the first response; want keep-alive")
		}
		closedWithin(t, conn, r, 3*time.Second)
	})
	t.Run("headers never finished", func(t *testing.T) {
		conn, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n"); err != nil {
			t.Fatal(err)
		}
		closedWithin(t, conn, bufio.NewReader(conn), 3*time.Second)
	})
}
