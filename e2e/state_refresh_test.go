package e2e

// Scenario 4 (a refresh whose response is lost is retried, not reuse) and
// scenario 11's per-family state (constant however often a family rotates)
// of issue 13.

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/fedbroker/fedbroker/broker/storage/redis/redistest"
)

// lossyProxy stands in front of one replica: it forwards each request and
// reads the replica's whole answer, then closes the client's connection
// without writing any of it, as when a load balancer loses the replica
// between its write to storage and its response.
type lossyProxy struct {
	URL  string
	mu   sync.Mutex
	lost [][]byte // the bodies the clients never saw
}

func startLossyProxy(t *testing.T, target string) *lossyProxy {
	t.Helper()
	p := &lossyProxy{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		req, err := http.NewRequestWithContext(r.Context(), r.Method, target+r.URL.RequestURI(), bytes.NewReader(body))
		if err != nil {
			panic(err)
		}
		req.Header = r.Header.Clone()
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			p.mu.Lock()
			p.lost = append(p.lost, b)
			p.mu.Unlock()
		}
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	t.Cleanup(srv.Close)
	p.URL = srv.URL
	return p
}

// lastLost returns the last answer the proxy swallowed, decoded.
func (p *lossyProxy) lastLost(t *testing.T) tokenResp {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.lost) == 0 {
		t.Fatal("the proxy swallowed no answer")
	}
	var tr tokenResp
	if err := json.Unmarshal(p.lost[len(p.lost)-1], &tr); err != nil {
		t.Fatalf("swallowed answer %q: %v", p.lost[len(p.lost)-1], err)
	}
	return tr
}

// refreshOnce sends one refresh on a fresh connection, never retried by
// the transport.
func refreshOnce(base, rt string) (int, error) {
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {"app"}}
	resp, err := freshClient.Post(base+"/token", "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
	if err != nil {
		return 0, err
	}
	discard(resp)
	return resp.StatusCode, nil
}

// refreshAs refreshes rt as the confidential client svc.
func refreshAs(base, rt string) (tokenResp, error) {
	return callToken(base, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, "svc", svcSecret)
}

const stateRetryWindow = 5 * time.Second

// TestStateRefresh: with tokens.refresh_retry_window set (and the fleet's
// key-encryption key, which seals the kept successor), a refresh whose
// response was lost is retried on another replica and answered with the
// same successor, the family staying alive; another client presenting the
// token is refused without revoking; after the window the same retry is
// reuse and revokes the family. A family rotated 200 times takes no more
// room in Redis than after 10 rotations.
func TestStateRefresh(t *testing.T) {
	rs := redistest.StartServer(t)
	node := fleetNode()
	node.RetryWindow = stateRetryWindow.String()
	cl := startStateCluster(t, rs.URL(), node, node, node)
	n := cl.Nodes
	lossy, other, outside, long := cl.login(t, 0), cl.login(t, 1), cl.login(t, 2), cl.login(t, 0)

	t.Run("retry_after_lost_response", func(t *testing.T) {
		t.Parallel()
		px := startLossyProxy(t, n[0].URL)
		if code, err := refreshOnce(px.URL, lossy.RefreshToken); err == nil {
			t.Fatalf("refresh through the lossy proxy answered %d, want a lost response", code)
		}
		lost := px.lastLost(t)
		if lost.Error != "" || lost.RefreshToken == "" {
			t.Fatalf("replica 0 did not rotate the token behind the proxy: %+v", lost)
		}
		// The client retries through another replica.
		retry, err := refresh(n[1].URL, lossy.RefreshToken)
		if err != nil || retry.status != http.StatusOK {
			t.Fatalf("retry with the same token at replica 1 = %d %s %s (%v), want 200", retry.status, retry.Error, retry.Description, err)
		}
		if retry.RefreshToken != lost.RefreshToken {
			t.Errorf("the retry got refresh token %.12s…, the lost answer had %.12s…: want the same successor", retry.RefreshToken, lost.RefreshToken)
		}
		if retry.AccessToken == "" || retry.IDToken == "" {
			t.Errorf("the retry's answer lacks tokens: %+v", retry)
		}
		wantActiveEverywhere(t, "the retry's access token", n, retry.AccessToken, true)
		if len(n[1].find(func(rec logRecord) bool { return rec.str("msg") == "refresh_retried" })) == 0 {
			t.Errorf("replica 1 wrote no refresh_retried audit line for the retry")
		}
		// The family lives on.
		next, err := refresh(n[2].URL, retry.RefreshToken)
		if err != nil || next.status != http.StatusOK {
			t.Fatalf("refresh with the successor at replica 2 = %d %s %s (%v), want 200", next.status, next.Error, next.Description, err)
		}
		// The successor is used: the first token is now plain reuse,
		// which revokes the family.
		wantInvalidGrant(t, "the first token once its successor was used", n[0].URL, lossy.RefreshToken)
		wantInvalidGrant(t, "the family's current token after reuse", n[1].URL, next.RefreshToken)
	})

	t.Run("other_client", func(t *testing.T) {
		t.Parallel()
		rot, err := refresh(n[0].URL, other.RefreshToken)
		if err != nil || rot.status != http.StatusOK {
			t.Fatalf("refresh = %+v, %v", rot, err)
		}
		tr, err := refreshAs(n[1].URL, other.RefreshToken)
		if err != nil || tr.status != http.StatusBadRequest || tr.Error != "invalid_grant" {
			t.Errorf("another client presenting the rotated token within the window = %d %s (%v), want 400 invalid_grant", tr.status, tr.Error, err)
		}
		if next, err := refresh(n[2].URL, rot.RefreshToken); err != nil || next.status != http.StatusOK {
			t.Errorf("the family after another client's attempt = %d %s %s (%v), want 200 (not revoked)", next.status, next.Error, next.Description, err)
		}
	})

	t.Run("outside_the_window", func(t *testing.T) {
		t.Parallel()
		rot, err := refresh(n[0].URL, outside.RefreshToken)
		if err != nil || rot.status != http.StatusOK {
			t.Fatalf("refresh = %+v, %v", rot, err)
		}
		time.Sleep(stateRetryWindow + 500*time.Millisecond)
		wantInvalidGrant(t, "the rotated token after the retry window", n[1].URL, outside.RefreshToken)
		wantInvalidGrant(t, "the successor after reuse revoked the family", n[2].URL, rot.RefreshToken)
		wantActiveEverywhere(t, "the revoked family's access token", n, rot.AccessToken, false)
	})

	t.Run("family_state_constant", func(t *testing.T) {
		t.Parallel()
		rc := goredis.NewClient(&goredis.Options{Addr: rs.Addr()})
		defer rc.Close()
		famID, _, _ := strings.Cut(long.RefreshToken, ".")
		rt := long.RefreshToken
		rotate := func(times int) {
			for i := range times {
				tr, err := refresh(n[i%len(n)].URL, rt)
				if err != nil || tr.status != http.StatusOK {
					t.Fatalf("rotation %d = %d %s %s (%v)", i, tr.status, tr.Error, tr.Description, err)
				}
				rt = tr.RefreshToken
			}
		}
		rotate(10)
		b10, k10 := familyFootprint(t, rc, famID)
		rotate(190)
		b200, k200 := familyFootprint(t, rc, famID)
		t.Logf("refresh family in Redis: %d keys, %d bytes after 10 rotations; %d keys, %d bytes after 200", k10, b10, k200, b200)
		if k10 == 0 || b10 == 0 {
			t.Fatalf("no keys of family %s found in Redis", famID)
		}
		if k200 != k10 || b200 > b10+64 {
			t.Errorf("family state grew: %d keys, %d bytes after 10 rotations; %d keys, %d bytes after 200", k10, b10, k200, b200)
		}
	})
}

// familyFootprint sums MEMORY USAGE (every element sampled) over the keys
// of refresh family id (the keys under its hash tag) and counts them.
func familyFootprint(t *testing.T, rc *goredis.Client, id string) (bytes int64, keys int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var found []string
	iter := rc.Scan(ctx, 0, "\\{fb:fam:"+id+"\\}*", 1000).Iterator()
	for iter.Next(ctx) {
		found = append(found, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Fatalf("SCAN: %v", err)
	}
	for _, k := range found {
		n, err := rc.MemoryUsage(ctx, k, 0).Result()
		if err != nil {
			t.Fatalf("MEMORY USAGE %s: %v", k, err)
		}
		bytes += n
		keys++
	}
	return bytes, keys
}
