package redis

import (
	"bytes"
	"context"
	"encoding/json"
	"log"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
)

// syncBuffer is a bytes.Buffer safe for the pool's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestGoRedisLogsAreJSON: with a Logger in Options, go-redis's own log
// lines (here: a pool that cannot dial) come out of the broker's slog
// logger as JSON at level WARN with component=redis, and nothing goes
// through the standard log package.
func TestGoRedisLogsAreJSON(t *testing.T) {
	var std syncBuffer
	log.SetOutput(&std)
	t.Cleanup(func() { log.SetOutput(nil) })
	t.Cleanup(func() { SetLogger(nil) }) // back to go-redis's default

	// A port nothing listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()

	var out syncBuffer
	logger := slog.New(slog.NewJSONHandler(&out, nil))
	_, err = Open(context.Background(), "redis://"+addr+"/0?max_retries=0&dial_timeout=200ms", Options{Logger: logger})
	if err == nil {
		t.Fatalf("Open against a closed port = nil error")
	}
	var found bool
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		if line == "" {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line is not JSON: %q: %v", line, err)
		}
		if msg, _ := rec["msg"].(string); strings.Contains(msg, "failed to dial") {
			found = true
			if rec["level"] != "WARN" || rec["component"] != "redis" {
				t.Errorf("go-redis log line = %v, want level WARN and component redis", rec)
			}
			if strings.HasPrefix(msg, "redis: ") {
				t.Errorf("msg %q keeps go-redis's prefix", msg)
			}
		}
	}
	if !found {
		t.Fatalf("no go-redis dial failure in the slog output:\n%s", out.String())
	}
	if s := std.String(); s != "" {
		t.Fatalf("the standard log package got output: %q", s)
	}
}
