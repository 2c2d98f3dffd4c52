package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startDrainBroker starts a broker whose http.drain_period is drain. The
// harness's brokerConfig has no drain field, so the test adds the line to
// the file it wrote; the address is chosen here (the harness only moves a
// replica to another port when it chose the port itself, and would then
// write the file again without the line).
func startDrainBroker(t *testing.T, drain string) *replica {
	t.Helper()
	for attempt := 0; ; attempt++ {
		r := newReplica(t, brokerConfig{Addr: freeAddr(t)})
		yml := strings.Replace(r.cfg.yaml(), "http:\n", "http:\n  drain_period: "+drain+"\n", 1)
		if !strings.Contains(yml, "drain_period: "+drain) {
			t.Fatalf("no http section in the harness configuration:\n%s", yml)
		}
		if err := os.WriteFile(r.cfgPath, []byte(yml), 0o600); err != nil {
			t.Fatal(err)
		}
		err := r.startReady(20 * time.Second)
		if err == nil {
			return r
		}
		if attempt == 2 || !strings.Contains(r.log(), "address already in use") {
			t.Fatalf("broker %s: %v\n%s", r.URL, err, r.log())
		}
		r.Kill()
	}
}

// signal sends sig to the broker process.
func (r *replica) signal(t *testing.T, sig os.Signal) {
	t.Helper()
	r.mu.Lock()
	cmd := r.cmd
	r.mu.Unlock()
	if err := cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v: %v", sig, err)
	}
}

// waitExit waits up to timeout for the process to exit and returns its
// exit code and when it was seen to exit; -1 if it still runs.
func (r *replica) waitExit(timeout time.Duration) (int, time.Time) {
	r.mu.Lock()
	cmd, exited := r.cmd, r.exited
	r.mu.Unlock()
	select {
	case <-exited:
		return cmd.ProcessState.ExitCode(), time.Now()
	case <-time.After(timeout):
		return -1, time.Now()
	}
}

// freshClient opens a new connection for every request, as a load
// balancer's health check or a new client does.
var freshClient = &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

func getStatus(u string) (int, string, error) {
	resp, err := freshClient.Get(u)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// listening reports whether the broker's listener accepts connections.
func listening(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// waitClosed polls until the listener refuses connections and returns
// when it first did; the zero time if it still accepts after timeout.
func waitClosed(addr string, timeout time.Duration) time.Time {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if !listening(addr) {
			return time.Now()
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Time{}
}

// waitDraining polls /readyz until it answers 503 and returns when it did.
func waitDraining(t *testing.T, r *replica, timeout time.Duration) (time.Time, string) {
	t.Helper()
	base := r.URL
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		status, body, err := getStatus(base + "/readyz")
		if err == nil && status == http.StatusServiceUnavailable {
			return time.Now(), body
		}
		last = fmt.Sprintf("%d %q %v", status, body, err)
		time.Sleep(5 * time.Millisecond)
	}
	code, _ := r.waitExit(0)
	t.Fatalf("/readyz did not answer 503 within %s of SIGTERM (last: %s; exit code %d, -1: still running)", timeout, last, code)
	return time.Time{}, ""
}

// slowTokenRequest is a client_credentials request whose body arrives in
// two parts, so that it is in flight for as long as the test wants.
type slowTokenRequest struct {
	conn net.Conn
	rest string
}

func startSlowTokenRequest(t *testing.T, addr string) *slowTokenRequest {
	t.Helper()
	body := url.Values{"grant_type": {"client_credentials"}}.Encode()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	half := len(body) / 2
	head := fmt.Sprintf("POST /token HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\nAuthorization: Basic %s\r\n\r\n%s",
		addr, len(body), basicAuth("svc", svcSecret), body[:half])
	if _, err := io.WriteString(conn, head); err != nil {
		t.Fatal(err)
	}
	return &slowTokenRequest{conn: conn, rest: body[half:]}
}

func basicAuth(user, pass string) string {
	r, _ := http.NewRequest(http.MethodGet, "http://x/", nil)
	r.SetBasicAuth(url.QueryEscape(user), url.QueryEscape(pass))
	return strings.TrimPrefix(r.Header.Get("Authorization"), "Basic ")
}

// finish sends the rest of the body and reads the answer.
func (s *slowTokenRequest) finish() (int, tokenResp, error) {
	_ = s.conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(s.conn, s.rest); err != nil {
		return 0, tokenResp{}, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(s.conn), nil)
	if err != nil {
		return 0, tokenResp{}, err
	}
	defer resp.Body.Close()
	var tr tokenResp
	err = json.NewDecoder(resp.Body).Decode(&tr)
	return resp.StatusCode, tr, err
}

// TestDrainOnSIGTERM: after SIGTERM the broker answers /readyz with 503 at
// once, keeps serving (new connections included) for http.drain_period,
// then closes its listener, finishes the request in flight and exits 0.
func TestDrainOnSIGTERM(t *testing.T) {
	const drain = 2 * time.Second
	r := startDrainBroker(t, "2s")
	addr := strings.TrimPrefix(r.URL, "http://")

	if status, body, err := getStatus(r.URL + "/readyz"); err != nil || status != http.StatusOK {
		t.Fatalf("/readyz before SIGTERM = %d %q, %v; want 200", status, body, err)
	}
	inflight := startSlowTokenRequest(t, addr)
	time.Sleep(50 * time.Millisecond) // let the broker read the headers

	sigAt := time.Now()
	r.signal(t, syscall.SIGTERM)
	at, body := waitDraining(t, r, time.Second)
	if d := at.Sub(sigAt); d > 200*time.Millisecond {
		t.Errorf("/readyz answered 503 %s after SIGTERM, want within 200ms", d)
	}
	if !strings.Contains(body, "draining") {
		t.Errorf("/readyz while draining = %q, want a body saying it is draining", body)
	}

	// Until the drain period ends everything else is served as before.
	checked := 0
	for time.Since(sigAt) < drain-600*time.Millisecond {
		for _, path := range []string{"/healthz", "/.well-known/openid-configuration", "/keys"} {
			status, body, err := getStatus(r.URL + path)
			if err != nil || status != http.StatusOK {
				t.Fatalf("GET %s %s after SIGTERM = %d %.100q, %v; want 200 during the drain", path, time.Since(sigAt).Round(time.Millisecond), status, body, err)
			}
		}
		if status, _, err := getStatus(r.URL + "/readyz"); err != nil || status != http.StatusServiceUnavailable {
			t.Fatalf("/readyz during the drain = %d, %v; want 503", status, err)
		}
		checked++
		time.Sleep(100 * time.Millisecond)
	}
	if tr, err := clientCredentials(r.URL); err != nil || tr.status != http.StatusOK || tr.AccessToken == "" {
		t.Errorf("client_credentials during the drain = %+v, %v; want 200", tr, err)
	}
	if checked < 3 {
		t.Errorf("only %d rounds of requests during the drain", checked)
	}

	closedAt := waitClosed(addr, drain+3*time.Second)
	if closedAt.IsZero() {
		t.Fatalf("the listener still accepts connections %s after SIGTERM", time.Since(sigAt))
	}
	if d := closedAt.Sub(sigAt); d < drain-100*time.Millisecond || d > drain+1500*time.Millisecond {
		t.Errorf("listener closed %s after SIGTERM, want about the drain period %s", d, drain)
	}

	// The request that was in flight when the listener closed still gets
	// its answer, and the process waits for it.
	time.Sleep(150 * time.Millisecond)
	select {
	case <-r.exited:
		t.Fatal("the broker exited with a request in flight")
	default:
	}
	status, tr, err := inflight.finish()
	if err != nil || status != http.StatusOK || tr.AccessToken == "" {
		t.Errorf("request in flight across the shutdown = %d %+v, %v; want 200 with a token", status, tr, err)
	}
	code, exitAt := r.waitExit(5 * time.Second)
	if code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	t.Logf("503 after %s, listener closed after %s, exited after %s", at.Sub(sigAt), closedAt.Sub(sigAt), exitAt.Sub(sigAt))
}

// TestDrainSecondSignal: a second SIGTERM during the drain period ends the
// drain at once; the broker then shuts down and exits 0.
func TestDrainSecondSignal(t *testing.T) {
	r := startDrainBroker(t, "30s")
	addr := strings.TrimPrefix(r.URL, "http://")

	first := time.Now()
	r.signal(t, syscall.SIGTERM)
	waitDraining(t, r, time.Second)
	time.Sleep(300 * time.Millisecond)
	if !listening(addr) {
		t.Fatalf("the listener closed %s after the first SIGTERM of a 30s drain", time.Since(first))
	}
	if status, _, err := getStatus(r.URL + "/healthz"); err != nil || status != http.StatusOK {
		t.Fatalf("/healthz during the drain = %d, %v; want 200", status, err)
	}

	second := time.Now()
	r.signal(t, syscall.SIGTERM)
	code, exitAt := r.waitExit(3 * time.Second)
	if code != 0 {
		t.Fatalf("exit code %d %s after the second SIGTERM, want 0 (-1: still running)", code, time.Since(second))
	}
	if d := exitAt.Sub(second); d > 2*time.Second {
		t.Errorf("exited %s after the second SIGTERM, want at once", d)
	}
}
