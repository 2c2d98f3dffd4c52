package redistest

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func client(t *testing.T, url string) *redis.Client {
	t.Helper()
	o, err := redis.ParseURL(url)
	if err != nil {
		t.Fatalf("ParseURL(%q) = %v", url, err)
	}
	o.MaxRetries = -1
	c := redis.NewClient(o)
	t.Cleanup(func() { c.Close() })
	return c
}

func TestStartIsEmpty(t *testing.T) {
	c := client(t, Start(t))
	ctx := context.Background()
	if n, err := c.DBSize(ctx).Result(); err != nil || n != 0 {
		t.Fatalf("DBSIZE of a fresh database = %d, %v, want 0", n, err)
	}
}

func TestStopRestart(t *testing.T) {
	srv := StartServer(t)
	ctx := context.Background()
	c := client(t, srv.URL())
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	// Persistence is off.
	if v, err := c.ConfigGet(ctx, "appendonly").Result(); err != nil || v["appendonly"] != "no" {
		t.Fatalf("CONFIG GET appendonly = %v, %v, want no", v, err)
	}
	srv.Stop()
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatalf("PING after Stop = nil, want an error")
	}
	srv.Stop() // idempotent
	srv.Restart()
	c2 := client(t, srv.URL())
	var err error
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if err = c2.Ping(ctx).Err(); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("PING after Restart = %v", err)
	}
	if n, err := c2.Exists(ctx, "k").Result(); err != nil || n != 0 {
		t.Fatalf("EXISTS k after Restart = %d, %v, want 0 (empty)", n, err)
	}
}

// TestMissingServer runs this test binary again without redis-server in
// PATH: the helper test must skip, or fail under CI=true.
func TestMissingServer(t *testing.T) {
	if os.Getenv("REDISTEST_CHILD") == "1" {
		Start(t)
		t.Fatal("Start returned without a redis-server")
	}
	for _, tc := range []struct {
		ci       string
		wantFail bool
		wantOut  string
	}{
		{"", false, "--- SKIP: TestMissingServer"},
		{"true", true, "--- FAIL: TestMissingServer"},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestMissingServer$", "-test.v")
		cmd.Env = append(os.Environ(), "REDISTEST_CHILD=1", "PATH="+t.TempDir(), "REDIS_URL=", "CI="+tc.ci)
		out, err := cmd.CombinedOutput()
		if failed := err != nil; failed != tc.wantFail {
			t.Errorf("CI=%q: child failed = %v (%v), want %v; output:\n%s", tc.ci, failed, err, tc.wantFail, out)
		}
		if !strings.Contains(string(out), tc.wantOut) || !strings.Contains(string(out), "redis-server not found") {
			t.Errorf("CI=%q: child output lacks %q and the reason:\n%s", tc.ci, tc.wantOut, out)
		}
	}
}
