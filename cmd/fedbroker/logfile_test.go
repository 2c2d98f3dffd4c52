package main

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// serve --log-file: the log (audit lines included) goes to the file, not
// standard error; the admin console's audit page shows the file's end;
// SIGHUP reopens the path, so a file moved away by logrotate is followed
// by a new one.
func TestServeLogFile(t *testing.T) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "fedbroker.log")
	httpAddr, adminAddr := freeAddr(t), freeAddr(t)
	const token = "serve-test-admin-token-0123456789"
	cfg := strings.Replace(goodConfig, "issuer: http://127.0.0.1:5556", "issuer: http://"+httpAddr, 1) +
		"http:\n  addr: " + httpAddr + "\n  drain_period: 0s\nadmin:\n  addr: " + adminAddr + "\n  token: " + token + "\n"
	path := writeFile(t, dir, "config.yaml", cfg)

	ctx, cancel := context.WithCancel(context.Background())
	var out, errOut syncWriter
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, []string{"serve", "--config", path, "--log-file", logPath}, strings.NewReader(""), &out, &errOut)
	}()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Error("serve did not stop")
		}
	}
	t.Cleanup(stop)

	admin := "http://" + adminAddr
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get("http://" + httpAddr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case code := <-done:
			t.Fatalf("serve exited with %d:\n%s", code, errOut.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not answer /healthz: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// An audited action: a reload through the admin API.
	req, _ := http.NewRequest(http.MethodPost, admin+"/admin/reload", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	logged, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(logged), `"msg":"fedbroker serving"`) || !strings.Contains(string(logged), `"audit":true`) {
		t.Errorf("log file lacks the serving line or an audit line:\n%s", logged)
	}
	if strings.Contains(errOut.String(), "fedbroker serving") {
		t.Errorf("the log went to standard error too:\n%s", errOut.String())
	}
	if st, err := os.Stat(logPath); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("log file mode = %v, %v; want 0600", st.Mode().Perm(), err)
	}

	// The console's audit page tails the file.
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	resp, err = c.PostForm(admin+"/console/login", url.Values{"token": {token}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	resp, err = c.Get(admin + "/console/audit")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	_, fileSection, ok := strings.Cut(string(page), "Audit file <code>"+logPath+"</code>")
	if !ok || !strings.Contains(fileSection, "<td>admin_reload</td>") {
		t.Errorf("audit page does not show the file's end:\n%s", page)
	}

	// logrotate moves the file and sends SIGHUP: the next lines go to a
	// new file at the same path.
	if err := os.Rename(logPath, logPath+".1"); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile(logPath)
		if err == nil && strings.Contains(string(b), "configuration reloaded") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no new log file after SIGHUP: %v %q", err, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop()
}

// A log file that cannot be opened is an error naming the flag.
func TestServeLogFileUnwritable(t *testing.T) {
	dir := t.TempDir()
	path := writeFile(t, dir, "config.yaml", goodConfig)
	var out, errOut syncWriter
	code := Main(context.Background(), []string{"serve", "--config", path, "--log-file", filepath.Join(dir, "no", "such", "dir", "x.log")}, strings.NewReader(""), &out, &errOut)
	if code == 0 || !strings.Contains(errOut.String(), "--log-file") {
		t.Errorf("serve with an unwritable log file = %d %q, want an error naming --log-file", code, errOut.String())
	}
}
