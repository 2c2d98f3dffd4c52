// Package redistest starts a real redis-server for tests.
//
// Start returns the URL of a fresh, empty database. When $REDIS_URL is set it
// is returned as is and the database it names is flushed (FLUSHDB) on every
// call: never point $REDIS_URL at a database that holds anything of value,
// and run packages one at a time (go test -p 1) since they share it.
// Otherwise a redis-server from $PATH is started on a free loopback port with
// persistence off and a temporary working directory, and stopped when the
// test ends. Without redis-server the test is skipped, except when $CI is
// "true", where it fails.
//
// StartServer always starts a private server (never $REDIS_URL), which a
// fault test may Stop and Restart.
package redistest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Start returns a redis:// URL of an empty database for t.
func Start(t testing.TB) string {
	t.Helper()
	if u := os.Getenv("REDIS_URL"); u != "" {
		flush(t, u)
		return u
	}
	return StartServer(t).URL()
}

// Server is a redis-server owned by one test.
type Server struct {
	t      testing.TB
	bin    string
	dir    string
	port   int
	args   []string
	mu     sync.Mutex
	proc   *os.Process
	exited chan error
}

// Binary returns the path of a Redis program (redis-server, redis-cli). When
// it is not installed the test is skipped, except under CI=true, where it
// fails: CI must never pass by skipping.
func Binary(t testing.TB, name string) string {
	t.Helper()
	bin, err := exec.LookPath(name)
	if err != nil {
		msg := "redistest: " + name + " not found in PATH; install redis-server (apt-get install redis-server, which brings redis-cli) to run this test"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return bin
}

// StartServer starts a private redis-server (never $REDIS_URL, since the
// test will stop and restart it) with extra command-line arguments, and
// stops it in t.Cleanup. The arguments come after the defaults (no
// persistence) and so override them, e.g. "--appendonly", "yes" or
// "--save", "3600 1"; "--save", "" is a separate, empty argument.
func StartServer(t testing.TB, extraArgs ...string) *Server {
	t.Helper()
	bin := Binary(t, "redis-server")
	var err error
	s := &Server{t: t, bin: bin, dir: t.TempDir(), args: extraArgs}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		s.port, err = freePort()
		if err != nil {
			t.Fatalf("redistest: free port: %v", err)
		}
		if lastErr = s.start(); lastErr == nil {
			t.Cleanup(s.Stop)
			return s
		}
	}
	t.Fatalf("redistest: start redis-server: %v", lastErr)
	return nil
}

// URL is the redis:// URL of the server's database 0.
func (s *Server) URL() string {
	return fmt.Sprintf("redis://127.0.0.1:%d/0", s.port)
}

// Addr is the server's host:port.
func (s *Server) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

// Stop kills the server; clients then see connection errors. Stop is
// idempotent.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return
	}
	_ = s.proc.Kill()
	<-s.exited
	s.proc, s.exited = nil, nil
}

// Restart stops the server if it runs (SIGKILL: a crash) and starts it
// again on the same port, with the same arguments and working directory:
// empty by default, or with what an AOF or RDB file kept when
// StartServer's arguments turned persistence on.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	var err error
	for attempt := 0; attempt < 20; attempt++ { // the port may linger briefly
		if err = s.start(); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.t.Fatalf("redistest: restart redis-server: %v", err)
}

func (s *Server) start() error {
	args := []string{
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", s.dir,
		"--protected-mode", "no",
		"--loglevel", "warning",
	}
	args = append(args, s.args...)
	cmd := exec.Command(s.bin, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return err
	}
	var logMu sync.Mutex
	var log strings.Builder
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			logMu.Lock()
			log.WriteString(sc.Text() + "\n")
			logMu.Unlock()
		}
	}()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	c := redis.NewClient(&redis.Options{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)), MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case err := <-exited:
			logMu.Lock()
			defer logMu.Unlock()
			return fmt.Errorf("redis-server exited (%v): %s", err, log.String())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited
			return fmt.Errorf("redis-server on port %d did not answer PING: %v", s.port, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.mu.Lock()
	s.proc, s.exited = cmd.Process, exited
	s.mu.Unlock()
	return nil
}

func flush(t testing.TB, url string) {
	t.Helper()
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatalf("redistest: REDIS_URL: %v", err)
	}
	c := redis.NewClient(opts)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.FlushDB(ctx).Err(); err != nil {
		t.Fatalf("redistest: flush REDIS_URL database: %v", err)
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
