// Package pgtest starts a real PostgreSQL server for tests, the way
// redistest starts redis-server.
//
// Start returns the URL of a fresh, empty database, created for the test
// (CREATE DATABASE pgtest_<random>) and dropped when it ends. When
// $POSTGRES_URL is set, the database is created on that server, which the
// tests then own: its role needs CREATEDB, and the database the URL names
// is only connected to, never changed. Otherwise it is created on a server
// private to the test binary, started (as StartServer does) by the first
// Start and killed, its directory removed, when the test binary exits:
// initdb costs about a second, a database a tenth of that. Databases are
// isolated from each other in everything a store uses: tables, advisory
// locks, LISTEN/NOTIFY channels. Without PostgreSQL the test is skipped,
// except when $CI is "true", where it fails.
//
// StartServer always starts a server of the test's own (never
// $POSTGRES_URL), which a fault test may Stop (a crash: SIGKILL to the
// postmaster and every backend) and Restart on the same port and data
// directory: what was committed before Stop is there after Restart.
//
// Servers run with fsync=off unless StartServer is given "-c", "fsync=on":
// a process crash (Stop) loses nothing, since every commit has reached the
// kernel, but a machine crash would.
//
// Tests often run as root, where initdb and postgres refuse to run. Then
// pgtest runs them as the "postgres" user (or "nobody" when there is
// none), in a directory that user owns under os.TempDir(); every directory
// above it must be searchable by that user (as /tmp is). The directory is
// not t.TempDir(), whose parent only root may enter and whose long path
// would not fit a Unix socket's.
package pgtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Start returns the URL of a fresh, empty database for t, dropped at
// cleanup: on $POSTGRES_URL's server when it is set, else on a server
// shared by the tests of this test binary.
func Start(t testing.TB) string {
	t.Helper()
	if u := os.Getenv("POSTGRES_URL"); u != "" {
		return createDatabase(t, u)
	}
	return createDatabase(t, sharedServer(t).url("postgres"))
}

// Server is a PostgreSQL server owned by one test (StartServer), or by
// the test binary (Start).
type Server struct {
	t    testing.TB // nil for the shared server
	bin  string     // postgres
	base string     // owned by the server's user; removed at cleanup
	data string     // base/data: the data directory and the socket directory
	log  *os.File   // base/postgres.log: initdb's and postgres's output
	port int
	args []string
	cred *syscall.Credential // nil when not root
	env  []string

	mu     sync.Mutex
	proc   *os.Process
	exited chan error
}

// libDirs is where Debian's postgresql packages put the server programs.
// The tests point it elsewhere to hide them.
var libDirs = "/usr/lib/postgresql/*/bin"

// Binary returns the path of a PostgreSQL program (initdb, pg_ctl,
// postgres): from $PATH, else from the newest /usr/lib/postgresql/*/bin,
// where Debian's postgresql package installs them. When it is not
// installed the test is skipped, except under CI=true, where it fails: CI
// must never pass by skipping.
func Binary(t testing.TB, name string) string {
	t.Helper()
	bin, err := lookBinary(name)
	if err != nil {
		msg := "pgtest: " + name + " not found in PATH or " + libDirs + "; install PostgreSQL (apt-get install postgresql, which brings initdb, pg_ctl and postgres) to run this test"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return bin
}

func lookBinary(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	dirs, _ := filepath.Glob(libDirs)
	version := func(dir string) int {
		v, err := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
		if err != nil {
			return -1
		}
		return v
	}
	slices.SortStableFunc(dirs, func(a, b string) int { return version(b) - version(a) })
	for _, dir := range dirs {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found", name)
}

// programs returns postgres and the initdb of the same installation.
func programs(t testing.TB) (postgres, initdb string) {
	t.Helper()
	postgres = Binary(t, "postgres")
	if real, err := filepath.EvalSymlinks(postgres); err == nil {
		if p := filepath.Join(filepath.Dir(real), "initdb"); isFile(p) {
			return real, p
		}
	}
	return postgres, Binary(t, "initdb")
}

// StartServer starts a PostgreSQL server for t alone (never $POSTGRES_URL,
// since the test may stop and restart it) on a free loopback port, and
// stops it in t.Cleanup. Its superuser is "postgres" with trust
// authentication, and it has an empty database "test" (URL). extraArgs are
// postgres command-line arguments after the defaults, and so override them,
// e.g. "-c", "fsync=on" for a server that is durable on disk and not only
// across a process crash.
func StartServer(t testing.TB, extraArgs ...string) *Server {
	t.Helper()
	postgres, initdb := programs(t)
	s, err := newServer(postgres, initdb, extraArgs)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	s.t = t
	t.Cleanup(s.remove)
	t.Cleanup(s.Stop)
	return s
}

// URL is the postgres:// URL of the server's "test" database, created
// empty with the server: every call returns the same database.
func (s *Server) URL() string {
	return s.url("test")
}

func (s *Server) url(db string) string {
	return fmt.Sprintf("postgres://postgres@%s/%s?sslmode=disable", s.Addr(), db)
}

// Addr is the server's host:port.
func (s *Server) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

// Stop kills the postmaster and every backend at once (SIGKILL: a crash,
// with no shutdown checkpoint); clients then see connection errors. Stop
// is idempotent.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return
	}
	killServer(s.proc.Pid, s.exited)
	s.proc, s.exited = nil, nil
}

// Restart stops the server if it runs (a crash, as Stop) and starts it
// again on the same port, with the same arguments and data directory:
// PostgreSQL recovers from its write-ahead log, and every transaction
// committed before the crash is there.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	var err error
	// The port may linger briefly.
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if err = s.start(); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		s.t.Fatalf("pgtest: restart postgres: %v", err)
	}
}

// newServer creates a data directory with initdb and an empty database
// "test", and starts postgres on it on a free port.
func newServer(postgres, initdb string, args []string) (_ *Server, err error) {
	s := &Server{bin: postgres, args: args, env: serverEnv()}
	uid, gid := -1, -1
	if os.Geteuid() == 0 {
		if uid, gid, err = serverUser(); err != nil {
			return nil, err
		}
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	if s.base, err = os.MkdirTemp("", "pgtest-"); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			s.remove()
		}
	}()
	s.data = filepath.Join(s.base, "data")
	if s.log, err = os.OpenFile(filepath.Join(s.base, "postgres.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err != nil {
		return nil, err
	}
	if s.cred != nil {
		if err := os.Chown(s.base, uid, gid); err != nil {
			return nil, err
		}
		if err := checkSearchable(filepath.Dir(s.base), uid); err != nil {
			return nil, err
		}
	}
	mark := s.logSize()
	if err := s.cmd(initdb, "-D", s.data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync").Run(); err != nil {
		return nil, fmt.Errorf("initdb: %v\n%s", err, s.logSince(mark))
	}
	// Single-user mode creates the test database without a server.
	cmd := s.cmd(postgres, "--single", "-D", s.data, "-F", "postgres")
	cmd.Stdin = strings.NewReader("CREATE DATABASE test;\n")
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("postgres --single: CREATE DATABASE test: %v\n%s", err, s.logSince(mark))
	}
	if out := s.logSince(mark); strings.Contains(out, "ERROR:") {
		return nil, fmt.Errorf("postgres --single: CREATE DATABASE test:\n%s", out)
	}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		if s.port, err = freePort(); err != nil {
			return nil, fmt.Errorf("free port: %v", err)
		}
		if lastErr = s.start(); lastErr == nil {
			return s, nil
		}
	}
	return nil, fmt.Errorf("start postgres: %v", lastErr)
}

// remove deletes the server's directory; the server must be stopped.
func (s *Server) remove() {
	if s.log != nil {
		_ = s.log.Close()
	}
	_ = os.RemoveAll(s.base)
}

// cmd returns a command that runs as the server's user, killed if the
// test binary dies.
func (s *Server) cmd(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Dir = s.base
	cmd.Env = s.env
	cmd.Stdout, cmd.Stderr = s.log, s.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Credential: s.cred}
	return cmd
}

func (s *Server) start() error {
	args := []string{
		"-D", s.data,
		"-p", strconv.Itoa(s.port),
		"-h", "127.0.0.1",
		"-k", s.data,
		"-c", "fsync=off",
		"-c", "shared_buffers=32MB",
		"-c", "max_connections=300",
		"-c", "jit=off",
	}
	args = append(args, s.args...)
	mark := s.logSize()
	cmd := s.cmd(s.bin, args...)
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(30 * time.Second) // crash recovery included
	for {
		select {
		case err := <-exited:
			return fmt.Errorf("postgres exited (%v):\n%s", err, s.logSince(mark))
		default:
		}
		err := ping(s.URL())
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			killServer(cmd.Process.Pid, exited)
			return fmt.Errorf("postgres on port %d did not accept connections: %v\n%s", s.port, err, s.logSince(mark))
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.mu.Lock()
	s.proc, s.exited = cmd.Process, exited
	s.mu.Unlock()
	return nil
}

// killServer kills a postmaster and its children with SIGKILL and waits
// until they are gone. The children are found through /proc: each is in a
// session of its own (InitPostmasterChild calls setsid), so no process
// group holds them all. The postmaster is stopped first so that it forks
// no new backend meanwhile.
func killServer(pid int, exited <-chan error) {
	_ = syscall.Kill(pid, syscall.SIGSTOP)
	children := childrenOf(pid)
	for _, c := range children {
		_ = syscall.Kill(c, syscall.SIGKILL)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	<-exited
	// The children are no longer ours to reap: wait until each has exited
	// (gone, or a zombie that holds no socket, file or shared memory).
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		children = slices.DeleteFunc(children, func(c int) bool {
			state, _, ok := procStat(c)
			return !ok || state == 'Z' || state == 'X'
		})
		if len(children) == 0 {
			return
		}
	}
}

// childrenOf lists the processes whose parent is pid.
func childrenOf(pid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range entries {
		c, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if _, ppid, ok := procStat(c); ok && ppid == pid {
			out = append(out, c)
		}
	}
	return out
}

// procStat returns a process's state and parent from /proc/PID/stat.
func procStat(pid int) (state byte, ppid int, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	// pid (comm) state ppid …; comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 || len(f[0]) != 1 {
		return 0, 0, false
	}
	ppid, err = strconv.Atoi(f[1])
	return f[0][0], ppid, err == nil
}

func ping(url string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	return c.Ping(ctx)
}

func (s *Server) logSize() int64 {
	fi, err := s.log.Stat()
	if err != nil {
		return 0
	}
	return fi.Size()
}

// logSince returns the server log written after mark, at most its last
// 8 KiB.
func (s *Server) logSince(mark int64) string {
	f, err := os.Open(s.log.Name())
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size()-mark > 8<<10 {
		mark = fi.Size() - 8<<10
	}
	if _, err := f.Seek(mark, io.SeekStart); err != nil {
		return "(no log: " + err.Error() + ")"
	}
	b, _ := io.ReadAll(f)
	return string(b)
}

// shared is the server Start creates databases on when $POSTGRES_URL is
// not set: one per test binary, started on first use.
var shared struct {
	mu     sync.Mutex
	srv    *Server
	reaper *os.File // the write end of the reaper's stdin, never closed
}

func sharedServer(t testing.TB) *Server {
	t.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.srv != nil {
		return shared.srv
	}
	postgres, initdb := programs(t)
	s, err := newServer(postgres, initdb, nil)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	// The test binary has no hook at exit. When it ends, however it ends,
	// the kernel kills the postmaster (Pdeathsig), whose backends then
	// exit, and closes the pipe a reaper process waits on, which then
	// removes the server's directory.
	r, w, err := os.Pipe()
	if err == nil {
		reaper := exec.Command("/bin/sh", "-c", `read _; sleep 1; rm -rf "$1"`, "pgtest-reaper", s.base)
		reaper.Stdin = r
		reaper.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // not killed with go test's process group on ^C
		err = reaper.Start()
		r.Close()
	}
	if err != nil {
		s.Stop()
		s.remove()
		t.Fatalf("pgtest: start the reaper of the shared server: %v", err)
	}
	shared.srv, shared.reaper = s, w
	return s
}

// serverUser returns the unprivileged user that runs PostgreSQL when the
// tests run as root: "postgres", else "nobody".
func serverUser() (uid, gid int, err error) {
	var errs []error
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		uid, err1 := strconv.Atoi(u.Uid)
		gid, err2 := strconv.Atoi(u.Gid)
		if err := errors.Join(err1, err2); err != nil {
			errs = append(errs, err)
			continue
		}
		return uid, gid, nil
	}
	return 0, 0, fmt.Errorf("running as root, and no unprivileged user to run PostgreSQL as (initdb and postgres refuse root): %w", errors.Join(errs...))
}

// checkSearchable reports an error unless uid can reach a directory inside
// dir: every directory from dir up to / must be searchable by it.
func checkSearchable(dir string, uid int) error {
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		perm := fi.Mode().Perm()
		if perm&0o001 == 0 && !(ok && int(st.Uid) == uid && perm&0o100 != 0) {
			return fmt.Errorf("%s (mode %v) is not searchable by uid %d, which runs PostgreSQL since the tests run as root; set TMPDIR to a directory it can reach, such as /tmp", d, perm, uid)
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

// serverEnv is the environment of initdb and postgres: the test's, without
// the libpq variables (PGDATA, PGPORT, …) that would change what they do.
func serverEnv() []string {
	return slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "PG")
	})
}

// createDatabase creates a new database on the server at serverURL, drops
// it at cleanup, and returns its URL.
func createDatabase(t testing.TB, serverURL string) string {
	t.Helper()
	u, err := url.Parse(serverURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		t.Fatalf("pgtest: POSTGRES_URL %q: want postgres://user@host:port/database (%v)", redact(serverURL), err)
	}
	name := "pgtest_" + randomHex(8)
	exec := func(sql string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, serverURL)
		if err != nil {
			return err
		}
		defer c.Close(context.Background())
		_, err = c.Exec(ctx, sql)
		return err
	}
	ident := pgx.Identifier{name}.Sanitize()
	if err := exec("CREATE DATABASE " + ident); err != nil {
		t.Fatalf("pgtest: %s: create database %s: %v", redact(serverURL), name, err)
	}
	t.Cleanup(func() {
		// FORCE (PostgreSQL 13+) ends the connections the test left open.
		if err := exec("DROP DATABASE IF EXISTS " + ident + " WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: %s: drop database %s: %v", redact(serverURL), name, err)
		}
	})
	u.Path, u.RawPath = "/"+name, ""
	return u.String()
}

func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func isFile(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
