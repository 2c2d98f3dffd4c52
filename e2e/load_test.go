package e2e

import (
	"context"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fedbroker/fedbroker/broker/storage/redis/redistest"
)

var opsLine = regexp.MustCompile(`ops (\d+)  errors (\d+)`)

// runLoad runs fedbroker-load with args and returns its report, failing
// the test unless it exits 0.
func runLoad(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, filepath.Join(binDir, "fedbroker-load"), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("fedbroker-load %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestLoadTool drives every flow of fedbroker-load for a moment against
// two replicas on one Redis and checks that operations succeeded without
// errors, and that non-loopback targets are refused.
func TestLoadTool(t *testing.T) {
	rs := redistest.StartServer(t)
	wl := freeAddr(t)
	// Every sign-in of the load tool comes from one address.
	a := startBroker(t, brokerConfig{RedisURL: rs.URL(), WorkloadAddr: wl, SignInBurst: 100000})
	b := startBroker(t, brokerConfig{Issuer: a.cfg.Issuer, RedisURL: rs.URL(), WorkloadAddr: wl, SignInBurst: 100000})
	targets := a.URL + "," + b.URL
	common := []string{"-target", targets, "-concurrency", "2", "-duration", "700ms", "-progress", "200ms"}
	for _, tt := range []struct {
		flow string
		args []string
	}{
		{"client_credentials", []string{"-client-id", "svc", "-client-secret", svcSecret}},
		{"exchange", []string{"-client-id", "ci", "-client-secret", svcSecret, "-workload-addr", wl}},
		{"login", []string{"-public-client", "app", "-redirect-uri", appRedirect, "-user", "alice", "-password", alicePassword}},
		{"refresh", []string{"-public-client", "app", "-redirect-uri", appRedirect, "-user", "alice", "-password", alicePassword}},
	} {
		t.Run(tt.flow, func(t *testing.T) {
			out := runLoad(t, append(append([]string{"-flow", tt.flow}, common...), tt.args...)...)
			m := opsLine.FindStringSubmatch(out)
			if m == nil {
				t.Fatalf("no ops line in:\n%s", out)
			}
			ops, _ := strconv.Atoi(m[1])
			errs, _ := strconv.Atoi(m[2])
			if ops < 2 || errs != 0 {
				t.Errorf("%s: %d ops, %d errors, want some ops and no errors:\n%s", tt.flow, ops, errs, out)
			}
			for _, want := range []string{"p50", "p95", "p99", "ops/s"} {
				if !strings.Contains(out, want) {
					t.Errorf("report lacks %q:\n%s", want, out)
				}
			}
		})
	}

	t.Run("refuses non-loopback", func(t *testing.T) {
		for _, target := range []string{"http://192.0.2.1:5556", "http://example.com", "http://127.0.0.1.nip.io:5556", "ftp://127.0.0.1"} {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			out, err := exec.CommandContext(ctx, filepath.Join(binDir, "fedbroker-load"), "-target", target, "-client-id", "svc", "-client-secret", "x", "-duration", "1s").CombinedOutput()
			cancel()
			if err == nil || !strings.Contains(string(out), "-target") {
				t.Errorf("fedbroker-load -target %s: err %v, output %q; want a refusal naming -target", target, err, out)
			}
		}
	})
}
