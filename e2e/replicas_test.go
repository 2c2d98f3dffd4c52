package e2e

import (
	"context"
	"net/http"
	"sync"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/fedbroker/fedbroker/broker/storage/redis/redistest"
)

// TestReplicasServeAnyStep sends each step of one login to a different
// replica: authorize on A, the login form and its POST on B, the code
// redemption on C and the refresh on A; tokens verify against the JWKS
// served by B. Then one code and one refresh token are raced across all
// three replicas: a refresh token rotates exactly once, and a code is
// redeemed exactly once, its refresh token revoked by the replays.
func TestReplicasServeAnyStep(t *testing.T) {
	rs := redistest.StartServer(t)
	cl := startCluster(t, 3, rs.URL(), "")
	a, c := cl.Replicas[0], cl.Replicas[2]

	var ls loginSteps
	cl.use(0)
	if err := ls.authorize(cl.Issuer); err != nil {
		t.Fatalf("authorize on A: %v", err)
	}
	cl.use(1)
	code, err := ls.submit(alicePassword)
	if err != nil {
		t.Fatalf("login on B: %v", err)
	}
	tr, err := redeem(c.URL, code, ls.p)
	if err != nil || tr.status != http.StatusOK {
		t.Fatalf("redeem on C = %+v, %v; want 200", tr, err)
	}
	ref, err := refresh(a.URL, tr.RefreshToken)
	if err != nil || ref.status != http.StatusOK {
		t.Fatalf("refresh on A = %+v, %v; want 200", ref, err)
	}

	ctx := context.Background()
	p, err := oidc.NewProvider(ctx, cl.Issuer) // routed to B
	if err != nil {
		t.Fatalf("discovery through B: %v", err)
	}
	v := p.Verifier(&oidc.Config{ClientID: "app"})
	for name, tok := range map[string]string{"id token from C": tr.IDToken, "id token from A": ref.IDToken} {
		idt, err := v.Verify(ctx, tok)
		if err != nil {
			t.Fatalf("verify %s against B's JWKS: %v", name, err)
		}
		if idt.Subject == "" || idt.Issuer != cl.Issuer {
			t.Errorf("%s: sub %q iss %q, want a subject and iss %q", name, idt.Subject, idt.Issuer, cl.Issuer)
		}
	}

	t.Run("code redeemed once", func(t *testing.T) {
		cl.use(1)
		var ls loginSteps
		if err := ls.authorize(cl.Issuer); err != nil {
			t.Fatal(err)
		}
		code, err := ls.submit(alicePassword)
		if err != nil {
			t.Fatal(err)
		}
		// A raced code is a replayed code: RFC 6749 §4.1.2 has the broker
		// revoke what the first redemption issued. Exactly one redemption
		// answers 200; its refresh token (absent when a replay revoked the
		// family before it was stored) is dead afterwards.
		var (
			mu  sync.Mutex
			rts []string
		)
		ok, bad := race(t, cl, func(base string) (tokenResp, error) {
			tr, err := redeem(base, code, ls.p)
			if err == nil && tr.status == http.StatusOK {
				mu.Lock()
				rts = append(rts, tr.RefreshToken)
				mu.Unlock()
			}
			return tr, err
		})
		if ok != 1 || ok+bad != 3*racers {
			t.Errorf("racing one code on 3 replicas: %d successes, %d invalid_grant; want exactly 1 success and the rest invalid_grant", ok, bad)
		}
		for _, rt := range rts {
			if rt == "" {
				continue
			}
			if tr, err := refresh(a.URL, rt); err != nil || tr.status != http.StatusBadRequest || tr.Error != "invalid_grant" {
				t.Errorf("refresh with the token of a replayed code = %+v, %v; want 400 invalid_grant", tr, err)
			}
		}
	})

	t.Run("refresh token rotated once", func(t *testing.T) {
		cl.use(2)
		tr := fullLogin(t, cl.Issuer)
		ok, bad := race(t, cl, func(base string) (tokenResp, error) { return refresh(base, tr.RefreshToken) })
		if ok != 1 || bad != 3*racers-1 {
			t.Errorf("racing one refresh token on 3 replicas: %d successes, %d invalid_grant; want 1 and %d", ok, bad, 3*racers-1)
		}
	})
}

const racers = 4 // concurrent requests per replica

// race sends call racers times to every replica at once and counts 200s
// and 400 invalid_grant answers; anything else fails the test.
func race(t *testing.T, cl *cluster, call func(base string) (tokenResp, error)) (ok, invalid int) {
	t.Helper()
	var (
		mu    sync.Mutex
		wg    sync.WaitGroup
		start = make(chan struct{})
	)
	for _, r := range cl.Replicas {
		for range racers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				tr, err := call(r.URL)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err != nil:
					t.Errorf("%s: %v", r.URL, err)
				case tr.status == http.StatusOK:
					ok++
				case tr.status == http.StatusBadRequest && tr.Error == "invalid_grant":
					invalid++
				default:
					t.Errorf("%s: %d %s %s, want 200 or 400 invalid_grant", r.URL, tr.status, tr.Error, tr.Description)
				}
			}()
		}
	}
	close(start)
	wg.Wait()
	return ok, invalid
}
