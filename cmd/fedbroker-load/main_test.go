package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestParseFlags(t *testing.T) {
	cc := []string{"-client-id", "svc", "-client-secret", "s"}
	tests := []struct {
		name    string
		args    []string
		wantErr string // substring; empty: no error
		targets int
	}{
		{"defaults", cc, "", 1},
		{"three replicas", append([]string{"-target", "http://127.0.0.1:1,http://[::1]:2,http://localhost:3"}, cc...), "", 3},
		{"public host", append([]string{"-target", "http://192.0.2.7:5556"}, cc...), "non-loopback", 0},
		{"one bad among good", append([]string{"-target", "http://127.0.0.1:1,https://sso.example.com"}, cc...), "non-loopback", 0},
		{"loopback-looking name", append([]string{"-target", "http://127.0.0.1.nip.io"}, cc...), "non-loopback", 0},
		{"not http", append([]string{"-target", "redis://127.0.0.1:6379"}, cc...), "http(s) URL", 0},
		{"credentials in URL", append([]string{"-target", "http://u:p@127.0.0.1:1"}, cc...), "without credentials", 0},
		{"too many workers", append([]string{"-concurrency", "100000"}, cc...), "-concurrency", 0},
		{"too many outstanding", append([]string{"-rate", "10", "-max-outstanding", "0"}, cc...), "-max-outstanding", 0},
		{"unbounded duration", append([]string{"-duration", "1h"}, cc...), "-duration", 0},
		{"negative requests", append([]string{"-requests", "-1"}, cc...), "-requests", 0},
		{"unknown flow", append([]string{"-flow", "implicit"}, cc...), "-flow", 0},
		{"cc without secret", []string{"-client-id", "svc"}, "-client-secret", 0},
		{"login without user", []string{"-flow", "login", "-public-client", "app", "-redirect-uri", "http://127.0.0.1/cb", "-password", "x"}, "-user", 0},
		{"open loop", append([]string{"-rate", "500"}, cc...), "", 1},
		{"negative rate", append([]string{"-rate", "-1"}, cc...), "-rate", 0},
		{"rate and find-max", append([]string{"-rate", "10", "-find-max"}, cc...), "choose one", 0},
		{"too many arrivals", append([]string{"-rate", "100000", "-duration", "10m"}, cc...), "arrivals", 0},
		{"exchange on a public workload addr", append([]string{"-flow", "exchange", "-workload-addr", "0.0.0.0:5599"}, cc...), "-workload-addr", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("FEDBROKER_LOAD_CLIENT_SECRET", "")
			t.Setenv("FEDBROKER_LOAD_PASSWORD", "")
			o, err := parseFlags(tt.args, io.Discard)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseFlags(%q) error = %v, want one containing %q", tt.args, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseFlags(%q) = %v", tt.args, err)
			}
			if len(o.targets) != tt.targets {
				t.Errorf("parseFlags(%q) targets = %v, want %d", tt.args, o.targets, tt.targets)
			}
		})
	}
}

func TestPercentile(t *testing.T) {
	series := func(n int) []time.Duration {
		var d []time.Duration
		for i := 1; i <= n; i++ {
			d = append(d, time.Duration(i)*time.Millisecond)
		}
		return d
	}
	tests := []struct {
		n    int
		p    float64
		want time.Duration
	}{
		{100, 0.5, 50 * time.Millisecond},
		{100, 0.9, 90 * time.Millisecond},
		{100, 0.95, 95 * time.Millisecond},
		{100, 0.99, 99 * time.Millisecond},
		{100, 0.999, 100 * time.Millisecond}, // fewer than 1000 values: the max
		{100, 1, 100 * time.Millisecond},
		{1000, 0.9, 900 * time.Millisecond},
		{1000, 0.99, 990 * time.Millisecond},
		{1000, 0.999, 999 * time.Millisecond},
		{1000, 1, 1000 * time.Millisecond},
		{10, 0.5, 5 * time.Millisecond},
		{10, 0.55, 6 * time.Millisecond}, // nearest rank rounds up
		{1, 0.5, time.Millisecond},
		{1, 0.999, time.Millisecond},
	}
	for _, tt := range tests {
		if got := percentile(series(tt.n), tt.p); got != tt.want {
			t.Errorf("percentile(1..%dms, %v) = %s, want %s", tt.n, tt.p, got, tt.want)
		}
	}
	if got := percentile(nil, 0.5); got != 0 {
		t.Errorf("percentile(nil) = %s, want 0", got)
	}
}

func TestArrivals(t *testing.T) {
	tests := []struct {
		rate     float64
		duration time.Duration
		requests int64
		want     int64
	}{
		{100, time.Second, 0, 100},
		{100, 10 * time.Second, 250, 250},
		{2.5, 3 * time.Second, 0, 7},
		{0.1, time.Second, 0, 1}, // at least one
		{1e9, 10 * time.Minute, 0, maxArrivals},
	}
	for _, tt := range tests {
		o := &options{duration: tt.duration, requests: tt.requests}
		if got := arrivals(o, tt.rate); got != tt.want {
			t.Errorf("arrivals(rate %v, %s, -requests %d) = %d, want %d", tt.rate, tt.duration, tt.requests, got, tt.want)
		}
	}
}

// tokenServer is a stand-in broker: /token answers every
// client_credentials request with an access token after serve returns.
func tokenServer(t *testing.T, serve func()) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/token" || r.PostFormValue("grant_type") != "client_credentials" {
			http.Error(w, "unexpected request", http.StatusBadRequest)
			return
		}
		serve()
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"access_token":"at","token_type":"Bearer"}`)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// loadAgainst runs the tool's client_credentials flow against target with
// extra flags: open loop when they set -rate, closed loop otherwise.
func loadAgainst(t *testing.T, target string, extra ...string) *result {
	t.Helper()
	args := append([]string{"-target", target, "-client-id", "svc", "-client-secret", "s", "-progress", "0"}, extra...)
	o, err := parseFlags(args, io.Discard)
	if err != nil {
		t.Fatalf("parseFlags(%q) = %v", args, err)
	}
	ctx := context.Background()
	d, err := newDriver(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	defer d.close()
	if o.rate > 0 {
		return d.runOpen(ctx, o.rate, io.Discard)
	}
	return d.run(ctx, io.Discard)
}

func sortedLatencies(r *result) []time.Duration {
	lat := slices.Clone(r.latencies)
	slices.Sort(lat)
	return lat
}

// TestOpenLoopRate checks that the arrivals follow the timetable: every
// one is sent, none dropped, and the achieved rate is the one asked for.
func TestOpenLoopRate(t *testing.T) {
	target := tokenServer(t, func() {})
	r := loadAgainst(t, target, "-rate", "200", "-duration", "1s", "-max-outstanding", "32")
	if r.scheduled != 200 || r.sent != 200 || r.dropped != 0 || r.ops != 200 || r.errorCount() != 0 {
		t.Fatalf("scheduled %d sent %d dropped %d ok %d errors %v, want 200 200 0 200 none", r.scheduled, r.sent, r.dropped, r.ops, r.errors)
	}
	// The last arrival is due at 995ms; a loaded machine answers it late,
	// so the bounds are loose.
	if got := float64(r.ops) / r.elapsed.Seconds(); got < 140 || got > 210 {
		t.Errorf("achieved %.1f ok/s over %s, want about 200", got, r.elapsed)
	}
	if r.window < 900*time.Millisecond {
		t.Errorf("timetable ran %s, want about 1s (arrivals spread, not sent at once)", r.window)
	}
	if len(r.latencies) != 200 {
		t.Errorf("%d latencies, want 200", len(r.latencies))
	}
}

// TestOpenLoopCountsQueueing stalls the server once for 300ms: the
// arrivals due meanwhile are still sent on time, and their latencies,
// measured from their scheduled times, include the wait. A closed loop
// against the same stall records it once (coordinated omission).
func TestOpenLoopCountsQueueing(t *testing.T) {
	const stall = 300 * time.Millisecond
	var once sync.Once
	target := tokenServer(t, func() { once.Do(func() { time.Sleep(stall) }) }) // concurrent callers wait for the first
	r := loadAgainst(t, target, "-rate", "100", "-duration", "1s", "-max-outstanding", "64")
	if r.sent != 100 || r.dropped != 0 || r.ops != 100 {
		t.Fatalf("sent %d dropped %d ok %d errors %v, want 100 0 100 none", r.sent, r.dropped, r.ops, r.errors)
	}
	lat := sortedLatencies(r)
	// Arrivals at 0, 10, ..., 290ms all finish at about 300ms: 30 of 100
	// waited 10-300ms, so p90 is about 200ms and the max about 300ms.
	if p90, top := percentile(lat, 0.9), percentile(lat, 1); p90 < 100*time.Millisecond || top < stall-50*time.Millisecond {
		t.Errorf("open loop p90 %s max %s, want p90 >= 100ms and max about %s (waiting behind the stall counts)", p90, top, stall)
	}

	once = sync.Once{}
	closed := loadAgainst(t, target, "-duration", "1s", "-concurrency", "1")
	if p90 := percentile(sortedLatencies(closed), 0.9); p90 >= 50*time.Millisecond {
		t.Errorf("closed loop p90 %s, want it small (one slow request among %d)", p90, closed.ops)
	}
}

// TestOpenLoopDropsAtCap keeps every request 200ms with at most 4
// outstanding: most arrivals find no free slot and are counted as
// dropped, never sent late.
func TestOpenLoopDropsAtCap(t *testing.T) {
	var mu sync.Mutex
	inFlight, peak := 0, 0
	target := tokenServer(t, func() {
		mu.Lock()
		inFlight++
		peak = max(peak, inFlight)
		mu.Unlock()
		time.Sleep(200 * time.Millisecond)
		mu.Lock()
		inFlight--
		mu.Unlock()
	})
	r := loadAgainst(t, target, "-rate", "100", "-duration", "500ms", "-max-outstanding", "4")
	if r.scheduled != 50 || r.sent+r.dropped != r.scheduled {
		t.Fatalf("scheduled %d sent %d dropped %d, want 50 = sent + dropped", r.scheduled, r.sent, r.dropped)
	}
	// 500ms of 200ms requests on 4 slots: at most 4 x 3 sent.
	if r.sent > 12 || r.dropped < 38 {
		t.Errorf("sent %d dropped %d, want at most 12 sent and the rest dropped", r.sent, r.dropped)
	}
	if r.ops != r.sent || r.errorCount() != 0 {
		t.Errorf("ok %d errors %v, want every sent request ok (%d)", r.ops, r.errors, r.sent)
	}
	mu.Lock()
	defer mu.Unlock()
	if peak > 4 {
		t.Errorf("server saw %d requests at once, want at most 4 (-max-outstanding)", peak)
	}
}

// TestGeneratorGC: the tool collects less often than Go's default unless
// GOGC says otherwise.
func TestGeneratorGC(t *testing.T) {
	orig := debug.SetGCPercent(100)
	defer debug.SetGCPercent(orig)
	generatorGC(func(string) string { return "" })
	if now := debug.SetGCPercent(100); now != generatorGCPercent {
		t.Errorf("GC percent without GOGC = %d, want %d", now, generatorGCPercent)
	}
	generatorGC(func(k string) string {
		if k == "GOGC" {
			return "100"
		}
		return ""
	})
	if now := debug.SetGCPercent(100); now != 100 {
		t.Errorf("GC percent with GOGC=100 = %d, want 100 (left alone)", now)
	}
}
