package e2e

// Harness for the shared-state tests (issue 13, state_*_test.go): replicas
// with an admin listener, a key-encryption key, per-replica signing
// configuration and INFO logs (the audit lines), started as child processes
// like the harness in harness_test.go does, whose brokerConfig has none of
// these fields. The YAML is brokerConfig's with lines added.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

const stateAdminToken = "state-admin-token-0123456789abcdefghij"

// stateKEK returns a base64 key-encryption key made of 32 bytes b.
func stateKEK(b byte) string {
	return base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{b}, 32))
}

// fleetKEK is the key-encryption key of the fleet in every state test.
var fleetKEK = stateKEK(0x42)

// stateNode is what one replica's configuration adds to brokerConfig's.
type stateNode struct {
	Algorithm  string   // signing.algorithm; default ES256
	Algorithms []string // signing.algorithms
	// KEK is signing.key_encryption_key; "" none, noKEK is the same.
	KEK string
	// RetryWindow is tokens.refresh_retry_window ("" leaves it unset).
	RetryWindow string
	// ExtraClients is YAML appended to the clients list.
	ExtraClients string
	// StoragePrefix is storage.redis.key_prefix ("" leaves it unset).
	StoragePrefix string
}

// noKEK is a stateNode.KEK that reads better than "".
const noKEK = ""

// fleetNode is the configuration every replica of a fleet shares unless a
// test says otherwise.
func fleetNode() stateNode { return stateNode{KEK: fleetKEK} }

// stateReplica is a fedbroker serve process with an admin listener.
type stateReplica struct {
	*replica
	Admin string // http://addr of the admin listener
	node  stateNode
}

// yaml is the replica's configuration file.
func (r *stateReplica) yaml() string {
	y := r.cfg.yaml()
	alg := r.node.Algorithm
	if alg == "" {
		alg = "ES256"
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "signing:\n  algorithm: %s\n", alg)
	if len(r.node.Algorithms) > 0 {
		fmt.Fprintf(&sb, "  algorithms: [%s]\n", strings.Join(r.node.Algorithms, ", "))
	}
	if r.node.KEK != "" {
		fmt.Fprintf(&sb, "  key_encryption_key: %q\n", r.node.KEK)
	}
	y = mustReplace(r.t, y, "signing:\n  algorithm: ES256\n", sb.String())
	if r.node.RetryWindow != "" {
		y = mustReplace(r.t, y, "tokens:\n", "tokens:\n  refresh_retry_window: "+r.node.RetryWindow+"\n")
	}
	if r.node.StoragePrefix != "" {
		y = mustReplace(r.t, y, "  redis:\n", "  redis:\n    key_prefix: "+r.node.StoragePrefix+"\n")
	}
	if r.cfg.WorkloadAddr != "" {
		r.t.Fatal("state harness: workloads would follow the clients list")
	}
	y += r.node.ExtraClients
	y += fmt.Sprintf("admin:\n  addr: %s\n  token: %s\n", strings.TrimPrefix(r.Admin, "http://"), stateAdminToken)
	return y
}

func mustReplace(t testing.TB, s, old, repl string) string {
	t.Helper()
	if !strings.Contains(s, old) {
		t.Fatalf("state harness: %q not in the harness configuration:\n%s", old, s)
	}
	return strings.Replace(s, old, repl, 1)
}

// writeConfig writes the replica's configuration file.
func (r *stateReplica) writeConfig() {
	if err := os.WriteFile(r.cfgPath, []byte(r.yaml()), 0o600); err != nil {
		r.t.Fatal(err)
	}
}

// newStateReplica writes the configuration of a replica on ports chosen
// here; issuer "" makes it http://<its address>.
func newStateReplica(t testing.TB, issuer, redisURL string, node stateNode) *stateReplica {
	t.Helper()
	r := &stateReplica{replica: newReplica(t, brokerConfig{Issuer: issuer, Addr: freeAddr(t), RedisURL: redisURL}), Admin: "http://" + freeAddr(t), node: node}
	r.autoIssuer = issuer == ""
	r.writeConfig()
	return r
}

// moveToFreePorts chooses other ports (another process took one).
func (r *stateReplica) moveToFreePorts() {
	r.cfg.Addr = freeAddr(r.t)
	if r.autoIssuer {
		r.cfg.Issuer = "http://" + r.cfg.Addr
	}
	r.URL = "http://" + r.cfg.Addr
	r.Admin = "http://" + freeAddr(r.t)
	r.writeConfig()
}

// launch starts the process at log level info (the audit log is INFO).
func (r *stateReplica) launch() error {
	r.logLevel = "info"
	return r.start()
}

// up starts the process and waits until /readyz answers 200 and the admin
// listener answers, moving to other ports when one was taken meanwhile.
func (r *stateReplica) up(timeout time.Duration) error {
	for attempt := 0; ; attempt++ {
		if err := r.launch(); err != nil {
			return err
		}
		err := r.waitReady(timeout)
		if err == nil {
			err = r.waitAdmin(timeout)
		}
		if err == nil || attempt == 2 || !strings.Contains(r.log(), "address already in use") {
			return err
		}
		r.Kill()
		r.moveToFreePorts()
	}
}

func (r *stateReplica) waitAdmin(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		code, _, err := r.adminDo(http.MethodGet, "/admin/status", nil)
		if err == nil && code == http.StatusOK {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("admin listener not answering after %s: %d, %v", timeout, code, err)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// startStateReplica starts a replica and waits until it is ready.
func startStateReplica(t testing.TB, issuer, redisURL string, node stateNode) *stateReplica {
	t.Helper()
	r := newStateReplica(t, issuer, redisURL, node)
	if err := r.up(20 * time.Second); err != nil {
		t.Fatalf("replica %s: %v\n%s", r.URL, err, r.log())
	}
	return r
}

// pause and resume stop and continue the process (SIGSTOP, SIGCONT): a
// replica that does nothing for a while, as under a long GC or VM pause.
func (r *stateReplica) pause(t *testing.T)  { r.signal(t, syscall.SIGSTOP) }
func (r *stateReplica) resume(t *testing.T) { r.signal(t, syscall.SIGCONT) }

// adminDo sends an admin API request with the bearer token.
func (r *stateReplica) adminDo(method, path string, body io.Reader) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, r.Admin+path, body)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+stateAdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// rotateAnswer is the answer of POST /admin/keys/rotate.
type rotateAnswer struct {
	Code    int    // HTTP status
	Status  string `json:"status"`
	Error   string `json:"error"`
	Version int64  `json:"version"`
}

func (r *stateReplica) rotate(t testing.TB) rotateAnswer {
	t.Helper()
	a, err := r.tryRotate()
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func (r *stateReplica) tryRotate() (rotateAnswer, error) {
	var a rotateAnswer
	code, body, err := r.adminDo(http.MethodPost, "/admin/keys/rotate", nil)
	if err != nil {
		return a, fmt.Errorf("POST %s/admin/keys/rotate: %w", r.Admin, err)
	}
	if err := json.Unmarshal(body, &a); err != nil {
		return a, fmt.Errorf("POST /admin/keys/rotate = %d %q: %w", code, body, err)
	}
	a.Code = code
	return a, nil
}

// metric returns the sum of the samples of the Prometheus metric name on
// the replica's /metrics (admin listener), and whether it is exposed.
func (r *stateReplica) metric(name string) (float64, bool) {
	code, body, err := r.adminDo(http.MethodGet, "/metrics", nil)
	if err != nil || code != http.StatusOK {
		return 0, false
	}
	var sum float64
	found := false
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name)
		if !ok || (rest != "" && rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			sum += v
			found = true
		}
	}
	return sum, found
}

// logRecord is one JSON line of a replica's log.
type logRecord map[string]any

func (l logRecord) str(k string) string { s, _ := l[k].(string); return s }

// records parses the replica's log; lines that are not JSON objects are
// returned as bad.
func (r *stateReplica) records() (recs []logRecord, bad []string) {
	for _, line := range strings.Split(strings.TrimRight(r.log(), "\n"), "\n") {
		if line == "" {
			continue
		}
		var rec logRecord
		if err := json.Unmarshal([]byte(line), &rec); err != nil || rec == nil {
			bad = append(bad, line)
			continue
		}
		recs = append(recs, rec)
	}
	return recs, bad
}

// find returns the log records for which match is true.
func (r *stateReplica) find(match func(logRecord) bool) []logRecord {
	recs, _ := r.records()
	var out []logRecord
	for _, rec := range recs {
		if match(rec) {
			out = append(out, rec)
		}
	}
	return out
}

// stateCluster is replicas on one Redis behind one issuer address (a router
// forwarding to the replica the test chooses), as in harness_test.go.
type stateCluster struct {
	Issuer string
	Nodes  []*stateReplica
	target atomic.Int32
}

// startStateCluster starts one replica per node, one after the other (the
// first creates the key set), sharing redisURL and an issuer.
func startStateCluster(t *testing.T, redisURL string, nodes ...stateNode) *stateCluster {
	t.Helper()
	cl := &stateCluster{}
	router := httptest.NewUnstartedServer(nil)
	cl.Issuer = "http://" + router.Listener.Addr().String()
	router.Config.Handler = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			u, _ := url.Parse(cl.Nodes[cl.target.Load()].URL)
			pr.SetURL(u)
			pr.Out.Host = pr.In.Host
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			http.Error(w, "router: "+err.Error(), http.StatusBadGateway)
		},
	}
	for _, n := range nodes {
		cl.Nodes = append(cl.Nodes, newStateReplica(t, cl.Issuer, redisURL, n))
	}
	router.Start()
	t.Cleanup(router.Close)
	for i, r := range cl.Nodes {
		if err := r.up(30 * time.Second); err != nil {
			t.Fatalf("replica %d: %v\n%s", i, err, r.log())
		}
	}
	return cl
}

// use routes the following issuer requests to replica i.
func (cl *stateCluster) use(i int) { cl.target.Store(int32(i)) }

// login runs a full browser login through replica i (every step) and
// returns its tokens.
func (cl *stateCluster) login(t *testing.T, i int) tokenResp {
	t.Helper()
	cl.use(i)
	return fullLogin(t, cl.Issuer)
}

// eventually polls cond every 50ms until it returns nil or timeout passes,
// and returns the last error.
func eventually(timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}
