package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fedbroker/fedbroker/broker/storage/redis/redistest"
)

// get returns the status and body of a GET.
func get(t testing.TB, u string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// loadStats counts the answers of a background load.
type loadStats struct {
	mu     sync.Mutex
	status map[int]int
	errs   int
}

// background runs call in workers goroutines until stop is closed.
func background(workers int, stop <-chan struct{}, call func() (int, error)) (*loadStats, *sync.WaitGroup) {
	st := &loadStats{status: map[int]int{}}
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				code, err := call()
				st.mu.Lock()
				if err != nil {
					st.errs++
				} else {
					st.status[code]++
				}
				st.mu.Unlock()
			}
		}()
	}
	return st, &wg
}

// wantUnavailable checks a 503 with an OAuth temporarily_unavailable body.
func wantUnavailable(t *testing.T, what string, status int, body []byte) {
	t.Helper()
	var e struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(body, &e); status != http.StatusServiceUnavailable || err != nil || e.Error != "temporarily_unavailable" {
		t.Errorf("%s with Redis down = %d %.200s, want 503 with error temporarily_unavailable", what, status, body)
	}
}

// TestRedisDown stops Redis under load: every endpoint that needs state
// answers 503 with an OAuth error (never 200, never active:true), discovery
// and JWKS keep serving, /readyz fails while /healthz stays up, and service
// returns without restarting the broker once Redis is back.
func TestRedisDown(t *testing.T) {
	rs := redistest.StartServer(t)
	r := startBroker(t, brokerConfig{RedisURL: rs.URL()})
	tr := fullLogin(t, r.URL)
	ctx := context.Background()

	load := startRefreshLoad(t, r.URL, 4)
	time.Sleep(300 * time.Millisecond)
	rs.Stop()
	load.storageDown()

	status, body, err := postForm(ctx, r.URL+"/token", map[string][]string{"grant_type": {"refresh_token"}, "refresh_token": {tr.RefreshToken}, "client_id": {"app"}}, "", "")
	if err != nil {
		t.Fatal(err)
	}
	wantUnavailable(t, "refresh", status, body)

	// /authorize is a browser endpoint: it answers with an error page
	// that names the OAuth error code.
	var ls loginSteps
	ls.b, ls.p = newBrowser(), newPKCE()
	if pg, err := ls.b.get(authorizeURL(r.URL, "local", ls.p)); err != nil || pg.status != http.StatusServiceUnavailable || !strings.Contains(pg.body, "temporarily_unavailable") {
		t.Errorf("authorize from a browser with Redis down = %d %.200s, %v; want a 503 page naming temporarily_unavailable", pg.status, pg.body, err)
	}

	status, body, err = postForm(ctx, r.URL+"/revoke", map[string][]string{"token": {tr.RefreshToken}, "client_id": {"app"}}, "", "")
	if err != nil {
		t.Fatal(err)
	}
	wantUnavailable(t, "revoke", status, body)

	status, body, err = postForm(ctx, r.URL+"/introspect", map[string][]string{"token": {tr.RefreshToken}}, "app-owner-irrelevant", "")
	if err != nil {
		t.Fatal(err)
	}
	if status != http.StatusUnauthorized && status != http.StatusServiceUnavailable {
		t.Errorf("introspect by an unknown client with Redis down = %d %.200s, want 401 or 503", status, body)
	}
	status, body, err = postForm(ctx, r.URL+"/introspect", map[string][]string{"token": {tr.RefreshToken}}, "svc", svcSecret)
	if err != nil {
		t.Fatal(err)
	}
	wantUnavailable(t, "introspect of a refresh token", status, body)
	if strings.Contains(string(body), `"active":true`) {
		t.Errorf("introspect of a refresh token with Redis down says active: %s", body)
	}
	// Access tokens are checked against the revocations kept in Redis: no
	// answer, rather than an "active" that might be wrong.
	if st, m, err := introspect(r.URL, tr.AccessToken); err != nil || st != http.StatusServiceUnavailable || m["active"] == true {
		t.Errorf("introspect of an access token with Redis down = %d %v, %v; want 503, never active", st, m, err)
	}

	if code, body := get(t, r.URL+"/.well-known/openid-configuration"); code != http.StatusOK || !strings.Contains(body, r.cfg.Issuer) {
		t.Errorf("discovery with Redis down = %d, want 200", code)
	}
	if code, body := get(t, r.URL+"/keys"); code != http.StatusOK || !strings.Contains(body, `"keys"`) {
		t.Errorf("JWKS with Redis down = %d %.100s, want 200", code, body)
	}
	if code, _ := get(t, r.URL+"/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz with Redis down = %d, want 503", code)
	}
	if code, _ := get(t, r.URL+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz with Redis down = %d, want 200", code)
	}

	load.wantNoLateOK(t, "Redis")

	rs.Restart()
	if err := r.waitReady(15 * time.Second); err != nil {
		t.Fatalf("broker did not become ready after Redis came back: %v", err)
	}
	load.finish(t, "Redis")
	fullLogin(t, r.URL) // a new login works on the same process
	if tr, err := clientCredentials(r.URL); err != nil || tr.status != http.StatusOK {
		t.Errorf("client_credentials after Redis returned = %+v, %v; want 200", tr, err)
	}
}

// refreshLoad rotates refresh token families at one replica, each worker
// its own family, as fast as it can, through a storage outage.
type refreshLoad struct {
	stats     *loadStats
	wg        *sync.WaitGroup
	stop      chan struct{}
	stoppedAt atomic.Int64 // unix nanos when storage went down
	lateOK    atomic.Int64 // 200s for requests sent after that
}

func startRefreshLoad(t *testing.T, base string, workers int) *refreshLoad {
	t.Helper()
	rts := make(chan string, workers)
	for range workers {
		rts <- fullLogin(t, base).RefreshToken
	}
	l := &refreshLoad{stop: make(chan struct{})}
	l.stats, l.wg = background(workers, l.stop, func() (int, error) {
		rt := <-rts
		sent := time.Now().UnixNano()
		tr, err := refresh(base, rt)
		if err == nil && tr.status == http.StatusOK {
			rt = tr.RefreshToken
			if at := l.stoppedAt.Load(); at != 0 && sent > at {
				l.lateOK.Add(1)
			}
		}
		rts <- rt
		return tr.status, err
	})
	return l
}

// storageDown records that storage was stopped now.
func (l *refreshLoad) storageDown() { l.stoppedAt.Store(time.Now().UnixNano()) }

// wantNoLateOK fails the test if a refresh sent after storage went down
// was answered 200.
func (l *refreshLoad) wantNoLateOK(t *testing.T, what string) {
	t.Helper()
	if n := l.lateOK.Load(); n != 0 {
		t.Errorf("%d refreshes sent after %s stopped answered 200, want 0", n, what)
	}
}

// finish stops the load and checks it saw 200s before the outage, 503s
// during it, and nothing but 200, 400 and 503.
func (l *refreshLoad) finish(t *testing.T, what string) {
	t.Helper()
	close(l.stop)
	l.wg.Wait()
	st := l.stats
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.status[http.StatusOK] == 0 {
		t.Errorf("load saw no 200 before %s stopped: %v", what, st.status)
	}
	for code, n := range st.status {
		if code != http.StatusOK && code != http.StatusServiceUnavailable && code != http.StatusBadRequest {
			t.Errorf("load saw %d answers with status %d, want only 200, 400 or 503", n, code)
		}
	}
	if st.status[http.StatusServiceUnavailable] == 0 {
		t.Errorf("load saw no 503 while %s was down: %v", what, st.status)
	}
}
