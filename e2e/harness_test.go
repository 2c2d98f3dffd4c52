package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/fedbroker/fedbroker/broker/config"
)

// binDir holds the binaries built once per test run by TestMain.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "fedbroker-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	binDir = dir
	for _, pkg := range []string{"fedbroker", "fedbroker-load"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, pkg), "./cmd/"+pkg)
		cmd.Dir = ".."
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: go build ./cmd/%s: %v\n%s", pkg, err, out)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const (
	alicePassword = "correct horse battery staple"
	svcSecret     = "svc-secret-0123456789-abcdefghij"
	appRedirect   = "http://127.0.0.1:9999/cb"
)

var hashes = sync.OnceValues(func() (string, string) {
	pw, err := bcrypt.GenerateFromPassword([]byte(alicePassword), bcrypt.MinCost)
	if err != nil {
		panic(err)
	}
	sh, err := config.HashSecret(svcSecret)
	if err != nil {
		panic(err)
	}
	return string(pw), sh
})

// brokerConfig is what differs between the brokers a test starts.
type brokerConfig struct {
	Issuer   string // default http://<Addr>
	Addr     string // default a free loopback port
	RedisURL string // empty: memory storage (unless SQLitePath or PostgresURL)
	// SQLitePath and PostgresURL select the SQL stores instead.
	SQLitePath  string
	PostgresURL string
	Eviction    string // storage.redis.eviction_policy
	// WorkloadAddr, when set, makes the broker trust the workload issuer
	// fedbroker-load serves there, for client "ci" (secret svcSecret).
	WorkloadAddr string
	// ExtraConnectors is YAML appended to the connectors list (indented
	// two spaces, each item starting with "  - id:").
	ExtraConnectors string
	// SignInBurst, when set, raises http.sign_in_limit (load tests start
	// every sign-in from one address).
	SignInBurst int
	// BackchannelLogoutURI, when set, is client app's
	// backchannel_logout_uri.
	BackchannelLogoutURI string
}

func (c brokerConfig) yaml() string {
	pw, sh := hashes()
	var b strings.Builder
	fmt.Fprintf(&b, "issuer: %s\nhttp:\n  addr: %s\n", c.Issuer, c.Addr)
	if c.SignInBurst > 0 {
		fmt.Fprintf(&b, "  sign_in_limit: {burst: %d, every: 1ms}\n", c.SignInBurst)
	}
	switch {
	case c.SQLitePath != "":
		fmt.Fprintf(&b, "storage:\n  type: sqlite\n  sqlite:\n    path: %q\n", c.SQLitePath)
	case c.PostgresURL != "":
		fmt.Fprintf(&b, "storage:\n  type: postgres\n  postgres:\n    url: %q\n", c.PostgresURL)
	case c.RedisURL == "":
		b.WriteString("storage:\n  type: memory\n")
	default:
		fmt.Fprintf(&b, "storage:\n  type: redis\n  redis:\n    url: %q\n", c.RedisURL)
		if c.Eviction != "" {
			fmt.Fprintf(&b, "    eviction_policy: %s\n", c.Eviction)
		}
	}
	fmt.Fprintf(&b, `signing:
  algorithm: ES256
tokens:
  id_token: 5m
  access_token: 5m
connectors:
  - id: local
    type: local
    name: Local accounts
    config:
      users:
        - username: alice
          password_hash: %q
          email: alice@acme.com
          name: Alice Example
          groups: [eng]
%sclients:
  - id: app
    name: App
    public: true
    redirect_uris: [%q]
    audiences: [api.acme.com]
%s  - id: svc
    name: Service
    secret_hash: %q
    redirect_uris: ["http://127.0.0.1:9999/svc"]
    grant_types: [authorization_code, refresh_token, client_credentials]
    audiences: [api.acme.com]
`, pw, c.ExtraConnectors, appRedirect, c.backchannel(), sh)
	if c.WorkloadAddr != "" {
		fmt.Fprintf(&b, `  - id: ci
    name: CI
    secret_hash: %q
    grant_types: [client_credentials, "urn:ietf:params:oauth:grant-type:token-exchange"]
    workloads: [load]
workloads:
  - id: load
    config:
      issuer: http://%s
      jwks_url: http://%s/keys
      audiences: [fedbroker-load]
      algorithms: [ES256]
      one_time_jti: true
`, sh, c.WorkloadAddr, c.WorkloadAddr)
	}
	return b.String()
}

// backchannel is client app's backchannel_logout_uri line, if any.
func (c brokerConfig) backchannel() string {
	if c.BackchannelLogoutURI == "" {
		return ""
	}
	return fmt.Sprintf("    backchannel_logout_uri: %q\n", c.BackchannelLogoutURI)
}

// replica is one fedbroker serve process.
type replica struct {
	t       testing.TB
	cfg     brokerConfig
	cfgPath string
	logPath string
	URL     string // http://addr, the replica's own address
	// autoAddr and autoIssuer are set when the harness chose the address
	// (and derived the issuer from it), so it may choose another.
	autoAddr, autoIssuer bool
	// logLevel is serve's --log-level (default warn).
	logLevel string
	mu       sync.Mutex
	cmd      *exec.Cmd
	exited   chan struct{}
}

// freeAddr returns a loopback address nobody listens on right now.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startBroker starts fedbroker serve with cfg and waits until /readyz
// answers 200. The process is killed when the test ends; its log is printed
// if the test failed.
func startBroker(t testing.TB, cfg brokerConfig) *replica {
	t.Helper()
	r := newReplica(t, cfg)
	if err := r.startReady(20 * time.Second); err != nil {
		t.Fatalf("broker %s: %v\n%s", r.URL, err, r.log())
	}
	return r
}

// startReady starts the process and waits for /readyz. When the port it
// was given was taken meanwhile by another process (freeAddr only finds a
// port free at that moment) and the test let the harness choose it, it
// moves to another port and tries again.
func (r *replica) startReady(timeout time.Duration) error {
	for attempt := 0; ; attempt++ {
		if err := r.start(); err != nil {
			return err
		}
		err := r.waitReady(timeout)
		if err == nil || !r.autoAddr || attempt == 2 || !strings.Contains(r.log(), "address already in use") {
			return err
		}
		r.Kill()
		r.cfg.Addr = freeAddr(r.t)
		if r.autoIssuer {
			r.cfg.Issuer = "http://" + r.cfg.Addr
		}
		r.URL = "http://" + r.cfg.Addr
		if err := os.WriteFile(r.cfgPath, []byte(r.cfg.yaml()), 0o600); err != nil {
			return err
		}
	}
}

// newReplica writes cfg to a temp dir without starting anything.
func newReplica(t testing.TB, cfg brokerConfig) *replica {
	t.Helper()
	autoAddr, autoIssuer := cfg.Addr == "", cfg.Issuer == ""
	if autoAddr {
		cfg.Addr = freeAddr(t)
	}
	if autoIssuer {
		cfg.Issuer = "http://" + cfg.Addr
	}
	dir := t.TempDir()
	r := &replica{t: t, cfg: cfg, autoAddr: autoAddr, autoIssuer: autoIssuer, cfgPath: filepath.Join(dir, "config.yaml"), logPath: filepath.Join(dir, "broker.log"), URL: "http://" + cfg.Addr}
	if err := os.WriteFile(r.cfgPath, []byte(cfg.yaml()), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r.Kill()
		if t.Failed() {
			t.Logf("broker %s log:\n%s", r.URL, r.log())
		}
	})
	return r
}

func (r *replica) start() error {
	logf, err := os.OpenFile(r.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	level := r.logLevel
	if level == "" {
		level = "warn"
	}
	cmd := exec.Command(filepath.Join(binDir, "fedbroker"), "serve", "--config", r.cfgPath, "--log-level", level)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(exited) }()
	r.mu.Lock()
	r.cmd, r.exited = cmd, exited
	r.mu.Unlock()
	return nil
}

// exitCode starts the process and waits up to timeout for it to exit (for
// configurations the broker must refuse); it returns the exit code, or -1
// if the process still runs.
func (r *replica) exitCode(timeout time.Duration) int {
	r.t.Helper()
	if err := r.start(); err != nil {
		r.t.Fatal(err)
	}
	r.mu.Lock()
	cmd, exited := r.cmd, r.exited
	r.mu.Unlock()
	select {
	case <-exited:
		return cmd.ProcessState.ExitCode()
	case <-time.After(timeout):
		return -1
	}
}

func (r *replica) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	c := &http.Client{Timeout: time.Second}
	for {
		select {
		case <-r.exited:
			return fmt.Errorf("exited before ready")
		default:
		}
		resp, err := c.Get(r.URL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %s (last: %v)", timeout, err)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// Kill sends SIGKILL and waits for the process to go.
func (r *replica) Kill() {
	r.mu.Lock()
	cmd, exited := r.cmd, r.exited
	r.cmd = nil
	r.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-exited
}

func (r *replica) log() string {
	b, _ := os.ReadFile(r.logPath)
	return string(b)
}

// cluster is several replicas sharing one Redis behind one issuer address
// (a router) that forwards each request to the replica the test chooses.
type cluster struct {
	Issuer   string
	Replicas []*replica
	target   atomic.Int32
}

// startCluster starts n replicas on redisURL with a common issuer.
func startCluster(t testing.TB, n int, redisURL string, extra string) *cluster {
	t.Helper()
	return startClusterWith(t, n, brokerConfig{RedisURL: redisURL, ExtraConnectors: extra})
}

// startClusterWith starts n replicas of base (its storage shared) behind
// one router whose address is their common issuer.
func startClusterWith(t testing.TB, n int, base brokerConfig) *cluster {
	t.Helper()
	cl := &cluster{}
	router := httptest.NewUnstartedServer(nil)
	cl.Issuer = "http://" + router.Listener.Addr().String()
	for range n {
		cfg := base
		cfg.Issuer, cfg.Addr = cl.Issuer, ""
		cl.Replicas = append(cl.Replicas, newReplica(t, cfg))
	}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			u, _ := url.Parse(cl.Replicas[cl.target.Load()].URL)
			pr.SetURL(u)
			pr.Out.Host = pr.In.Host
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			http.Error(w, "router: "+err.Error(), http.StatusBadGateway)
		},
	}
	router.Config.Handler = proxy
	router.Start()
	t.Cleanup(router.Close)
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i, r := range cl.Replicas {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = r.startReady(30 * time.Second)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("replica %d: %v\n%s", i, err, cl.Replicas[i].log())
		}
	}
	return cl
}

// use routes the following issuer requests to replica i.
func (cl *cluster) use(i int) { cl.target.Store(int32(i)) }

// postForm posts form to u with optional basic credentials and returns the
// status and body.
func postForm(ctx context.Context, u string, form url.Values, user, pass string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if user != "" {
		req.SetBasicAuth(url.QueryEscape(user), url.QueryEscape(pass))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, err = buf.ReadFrom(resp.Body)
	return resp.StatusCode, buf.Bytes(), err
}
