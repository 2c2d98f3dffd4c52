package e2e

// Scenarios 5 and 6 of issue 13: a replica whose configuration disagrees
// with the key set shared in storage (its key-encryption key, its
// signing.algorithm) signs nothing and is never ready, and every ready
// replica publishes the same discovery document.

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/fedbroker/fedbroker/broker/storage/redis/redistest"
)

// wantUnavailableToken checks that the replica signs nothing: /token
// answers 503 temporarily_unavailable.
func wantUnavailableToken(t *testing.T, what, base string) {
	t.Helper()
	tr, err := clientCredentials(base)
	if err != nil || tr.status != http.StatusServiceUnavailable || tr.Error != "temporarily_unavailable" || tr.AccessToken != "" {
		t.Errorf("client_credentials at %s = %d %s %.40q (%v), want 503 temporarily_unavailable and no token", what, tr.status, tr.Error, tr.AccessToken, err)
	}
}

// wantNeverReady starts r, whose configuration disagrees with the shared
// key set at configuration path path, and checks it never serves as a
// ready replica: it either refuses to start (non-zero exit) or runs with
// /readyz 503 naming path and signs nothing; either way its log names path
// and every one of words. /readyz must never answer 200.
func wantNeverReady(t *testing.T, r *stateReplica, path string, words ...string) {
	t.Helper()
	if err := r.launch(); err != nil {
		t.Fatal(err)
	}
	outcome := ""
	err := eventually(15*time.Second, func() error {
		code, body := readyStatus(r.URL)
		switch {
		case code == http.StatusOK:
			return nil // reported below
		case code == http.StatusServiceUnavailable && strings.Contains(body, path):
			outcome = "running, not ready: " + body
			return nil
		}
		select {
		case <-r.exited:
			outcome = "exited"
			return nil
		default:
		}
		return fmt.Errorf("/readyz = %d %q", code, body)
	})
	if err != nil {
		t.Fatalf("replica neither exited nor answered /readyz 503 naming %s: %v\n%s", path, err, r.log())
	}
	if code, body := readyStatus(r.URL); code == http.StatusOK {
		t.Fatalf("a replica whose %s disagrees with the shared key set is ready: /readyz = 200 %s", path, body)
	}
	if outcome == "exited" {
		if code := r.cmd.ProcessState.ExitCode(); code <= 0 {
			t.Errorf("the refused replica exited with %d, want a non-zero exit", code)
		}
	} else {
		wantUnavailableToken(t, "the refused replica", r.URL)
		// It stays not ready.
		time.Sleep(500 * time.Millisecond)
		if code, body := readyStatus(r.URL); code != http.StatusServiceUnavailable {
			t.Errorf("the refused replica's /readyz became %d %s, want 503", code, body)
		}
	}
	t.Logf("replica with a mismatched %s: %s", path, outcome)
	log := r.log()
	for _, w := range append([]string{path}, words...) {
		if !strings.Contains(log, w) {
			t.Errorf("the refused replica's log does not name %q:\n%s", w, log)
		}
	}
}

// TestStateKEKMismatch (scenario 5): replica 0 has no key-encryption key
// (it wrote the key set in clear), replica 1 another key than the fleet's,
// replica 2 the fleet's. Once replica 2 rotates, the stored keys are sealed
// with the fleet's key: replicas 0 and 1 cannot decrypt them, so they
// report not ready naming signing.key_encryption_key, answer /token with
// 503 temporarily_unavailable and log the reason at ERROR, instead of
// signing with the keys in their memory. A replica started now with
// another key never becomes ready.
func TestStateKEKMismatch(t *testing.T) {
	rs := redistest.StartServer(t)
	cl := startStateCluster(t, rs.URL(), stateNode{KEK: noKEK}, stateNode{KEK: stateKEK(0x07)}, fleetNode())
	n := cl.Nodes
	for i, r := range n {
		if tr, err := clientCredentials(r.URL); err != nil || tr.status != http.StatusOK {
			t.Fatalf("client_credentials at replica %d before the rotation = %+v, %v", i, tr, err)
		}
	}
	if a := n[2].rotate(t); a.Code != http.StatusOK || a.Status != "rotated" {
		t.Fatalf("rotation at replica 2 = %+v, want 200 rotated", a)
	}

	for i, why := range map[int]string{0: "no key-encryption key", 1: "another key-encryption key"} {
		r := n[i]
		err := eventually(10*time.Second, func() error {
			code, body := readyStatus(r.URL)
			if code != http.StatusServiceUnavailable || !strings.Contains(body, "signing.key_encryption_key") {
				return fmt.Errorf("/readyz = %d %s", code, body)
			}
			return nil
		})
		if err != nil {
			t.Errorf("replica %d with %s: want /readyz 503 naming signing.key_encryption_key: %v", i, why, err)
		}
		wantUnavailableToken(t, fmt.Sprintf("replica %d with %s", i, why), r.URL)
		lines := r.find(func(rec logRecord) bool {
			return rec.str("level") == "ERROR" && rec.str("config_path") == "signing.key_encryption_key"
		})
		if len(lines) == 0 {
			t.Errorf("replica %d with %s logged no ERROR with config_path signing.key_encryption_key", i, why)
		}
	}
	// The fleet's replica signs, with keys the stored set publishes.
	if code, body := readyStatus(n[2].URL); code != http.StatusOK {
		t.Errorf("replica 2 (the fleet's key) /readyz = %d %s, want 200", code, body)
	}
	tr, err := clientCredentials(n[2].URL)
	if err != nil || tr.status != http.StatusOK {
		t.Fatalf("client_credentials at replica 2 = %+v, %v", tr, err)
	}
	if err := verifyAgainst(tr.AccessToken, n[2].URL); err != nil {
		t.Errorf("replica 2's token: %v", err)
	}

	late := newStateReplica(t, cl.Issuer, rs.URL(), stateNode{KEK: stateKEK(0x09)})
	wantNeverReady(t, late, "signing.key_encryption_key")
}

// TestStateAlgorithmMismatch (scenario 6): a replica whose
// signing.algorithm (RS256) has no key in the fleet's shared set (ES256)
// is never ready, names signing.algorithm and both algorithms in its log,
// and changes nothing the fleet publishes.
func TestStateAlgorithmMismatch(t *testing.T) {
	rs := redistest.StartServer(t)
	cl := startStateCluster(t, rs.URL(), fleetNode(), fleetNode())
	algs, kids := discoveryAlgs(t, cl.Nodes[0].URL), kidsAt(t, cl.Nodes[0].URL)

	rsa := fleetNode()
	rsa.Algorithm = "RS256"
	wantNeverReady(t, newStateReplica(t, cl.Issuer, rs.URL(), rsa), "signing.algorithm", "RS256", "ES256")

	for i, r := range cl.Nodes {
		if got := discoveryAlgs(t, r.URL); !slices.Equal(got, algs) {
			t.Errorf("replica %d's discovery lists %v, before %v", i, got, algs)
		}
		if got := kidsAt(t, r.URL); !slices.Equal(got, kids) {
			t.Errorf("replica %d publishes %v, before %v", i, got, kids)
		}
		if kid, alg := header(t, mustAccessToken(t, r.URL)); alg != "ES256" || !slices.Contains(kids, kid) {
			t.Errorf("replica %d signs with %s %s", i, alg, kid)
		}
	}
}

func mustAccessToken(t *testing.T, base string) string {
	t.Helper()
	tr, err := clientCredentials(base)
	if err != nil || tr.status != http.StatusOK {
		t.Fatalf("client_credentials at %s = %+v, %v", base, tr, err)
	}
	return tr.AccessToken
}

// TestStateSwappedAlgorithms (scenario 6): replica A signs ES256 and keeps
// RS256 keys, replica C signs ES256 only, replica B signs RS256 and keeps
// ES256 keys; A starts first, so the shared set's default is ES256. B has
// keys for both algorithms in the set, but its default is not the fleet's:
// it must never be ready, naming signing.algorithm. Every ready replica
// publishes the same id_token_signing_alg_values_supported, and go-oidc
// configured from any ready replica's discovery accepts the ID tokens of
// every ready replica.
func TestStateSwappedAlgorithms(t *testing.T) {
	rs := redistest.StartServer(t)
	a := stateNode{KEK: fleetKEK, Algorithm: "ES256", Algorithms: []string{"ES256", "RS256"}}
	c := stateNode{KEK: fleetKEK, Algorithm: "ES256"}
	b := stateNode{KEK: fleetKEK, Algorithm: "RS256", Algorithms: []string{"RS256", "ES256"}}
	cl := startStateCluster(t, rs.URL(), a, c)
	rb := newStateReplica(t, cl.Issuer, rs.URL(), b)
	cl.Nodes = append(cl.Nodes, rb)
	t.Run("B_not_ready", func(t *testing.T) {
		wantNeverReady(t, rb, "signing.algorithm")
	})

	var ready []int
	for i, r := range cl.Nodes {
		if code, _ := readyStatus(r.URL); code == http.StatusOK {
			ready = append(ready, i)
		}
	}
	if len(ready) < 2 {
		t.Fatalf("ready replicas %v, want at least A and C", ready)
	}
	first := discoveryAlgs(t, cl.Nodes[ready[0]].URL)
	for _, i := range ready[1:] {
		if got := discoveryAlgs(t, cl.Nodes[i].URL); !slices.Equal(got, first) {
			t.Errorf("id_token_signing_alg_values_supported: replica %d lists %v, replica %d %v", i, got, ready[0], first)
		}
	}
	var idTokens []string
	for _, i := range ready {
		idTokens = append(idTokens, cl.login(t, i).IDToken)
	}
	ctx := context.Background()
	for _, i := range ready {
		cl.use(i)
		p, err := oidc.NewProvider(ctx, cl.Issuer)
		if err != nil {
			t.Fatalf("discovery through replica %d: %v", i, err)
		}
		var claims struct {
			Algs []string `json:"id_token_signing_alg_values_supported"`
		}
		_ = p.Claims(&claims)
		v := p.Verifier(&oidc.Config{ClientID: "app", SupportedSigningAlgs: claims.Algs})
		for j, tok := range idTokens {
			if _, err := v.Verify(ctx, tok); err != nil {
				t.Errorf("go-oidc configured from replica %d's discovery %v rejects the ID token of replica %d: %v", i, claims.Algs, ready[j], err)
			}
		}
	}
}
