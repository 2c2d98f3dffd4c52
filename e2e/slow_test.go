package e2e

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fedbroker/fedbroker/broker/storage/redis/redistest"
)

// TestSlowRedis puts a proxy that delays every byte by 4s between the
// broker and Redis: requests that need Redis fail with 503 within a bounded
// time instead of piling up, endpoints that do not need it stay fast, and
// once Redis is fast again requests succeed and the goroutine count returns
// to where it was (nothing leaked). With go-redis's default timeouts the
// bound is about 10s (3s read timeout, retried); timeouts in the URL
// tighten it.
func TestSlowRedis(t *testing.T) {
	for _, tt := range []struct {
		name, query string
		bound       time.Duration
	}{
		{"default timeouts", "", 5 * time.Second},
		{"read_timeout in the URL", "?read_timeout=300ms&write_timeout=300ms", 3 * time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) { testSlowRedis(t, tt.query, tt.bound) })
	}
}

func testSlowRedis(t *testing.T, query string, bound time.Duration) {
	rs := redistest.StartServer(t)
	px := startDelayProxy(t, rs.Addr())
	srv := httptest.NewUnstartedServer(nil)
	addr := srv.Listener.Addr().String()
	in := startInProcess(t, brokerConfig{Addr: addr, RedisURL: "redis://" + px.Addr() + "/0" + query}, 0)
	srv.Config.Handler = in.Server.Handler()
	srv.Start()
	t.Cleanup(srv.Close)
	base := srv.URL
	client := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

	refreshOnce := func() (int, time.Duration) {
		start := time.Now()
		form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"fam" + randToken(8) + "." + randToken(16)}, "client_id": {"app"}}
		resp, err := client.Post(base+"/token", "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
		if err != nil {
			t.Errorf("POST /token: %v", err)
			return 0, time.Since(start)
		}
		discard(resp)
		return resp.StatusCode, time.Since(start)
	}
	// Warm up, then take the baseline.
	for range 5 {
		if code, _ := refreshOnce(); code != http.StatusBadRequest {
			t.Fatalf("unknown refresh token with fast Redis = %d, want 400", code)
		}
	}
	time.Sleep(100 * time.Millisecond)
	// Each proxied Redis connection costs the proxy three goroutines in
	// this process; they are not the broker's and are left out.
	brokerGoroutines := func() int { return runtime.NumGoroutine() - 3*int(px.conns.Load()) }
	baseline := brokerGoroutines()

	px.delay.Store(int64(4 * time.Second))
	const n = 20
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		codes  = map[int]int{}
		slowst time.Duration
	)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, took := refreshOnce()
			mu.Lock()
			codes[code]++
			slowst = max(slowst, took)
			mu.Unlock()
		}()
	}
	// Discovery, JWKS and client_credentials need no Redis round trip.
	start := time.Now()
	if tr, err := clientCredentials(base); err != nil || tr.status != http.StatusOK {
		t.Errorf("client_credentials with slow Redis = %+v, %v; want 200", tr, err)
	}
	if resp, err := client.Get(base + "/keys"); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("JWKS with slow Redis: %v", err)
	} else {
		discard(resp)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("client_credentials and JWKS with slow Redis took %s, want well under the 4s Redis delay", took)
	}
	wg.Wait()
	t.Logf("slow Redis: %d refreshes answered %v, slowest %s", n, codes, slowst)
	if codes[http.StatusServiceUnavailable] != n {
		t.Errorf("refreshes with Redis 4s slow = %v, want all %d answered 503", codes, n)
	}
	if slowst > bound {
		t.Errorf("slowest refresh with slow Redis took %s, want at most %s", slowst, bound)
	}

	px.delay.Store(0)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		code, _ := refreshOnce()
		if code == http.StatusBadRequest {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("refresh after Redis is fast again = %d, want 400 invalid_grant", code)
		}
		time.Sleep(50 * time.Millisecond)
	}
	var got int
	for {
		got = brokerGoroutines()
		if got <= baseline+3 {
			break
		}
		if ctx.Err() != nil {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines: %d after the slow period, %d before; a leak?\n%s", got, baseline, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("goroutines: %d before, %d after", baseline, got)
}
