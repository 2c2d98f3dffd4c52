package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/fedbroker/fedbroker/broker"
	"github.com/fedbroker/fedbroker/broker/keys"
	"github.com/fedbroker/fedbroker/broker/storage/redis/redistest"
)

// inProcessCluster is n in-process brokers on one Redis behind one issuer
// address that spreads requests round-robin; Direct[i] serves replica i
// alone.
type inProcessCluster struct {
	Issuer    string
	Instances []*broker.Instance
	Direct    []string
}

func startInProcessCluster(t *testing.T, n int, redisURL string, rotation time.Duration) *inProcessCluster {
	t.Helper()
	router := httptest.NewUnstartedServer(nil)
	addr := router.Listener.Addr().String()
	cl := &inProcessCluster{Issuer: "http://" + addr}
	var handlers []http.Handler
	for range n {
		in := startInProcess(t, brokerConfig{Addr: addr, RedisURL: redisURL}, rotation)
		cl.Instances = append(cl.Instances, in)
		handlers = append(handlers, in.Server.Handler())
		d := httptest.NewServer(in.Server.Handler())
		t.Cleanup(d.Close)
		cl.Direct = append(cl.Direct, d.URL)
	}
	var next atomic.Uint64
	router.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handlers[next.Add(1)%uint64(n)].ServeHTTP(w, r)
	})
	router.Start()
	t.Cleanup(router.Close)
	return cl
}

var maxAgeRE = regexp.MustCompile(`max-age=(\d+)`)

// jwksCache is a relying party's cache of one replica's JWKS, honouring
// Cache-Control max-age as a client library would.
type jwksCache struct {
	url     string
	set     jose.JSONWebKeySet
	expires time.Time
}

func (c *jwksCache) get(now time.Time) (jose.JSONWebKeySet, error) {
	if now.Before(c.expires) {
		return c.set, nil
	}
	resp, err := http.Get(c.url + "/keys")
	if err != nil {
		return c.set, err
	}
	defer resp.Body.Close()
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		return c.set, fmt.Errorf("decode JWKS: %w", err)
	}
	age := 0
	if m := maxAgeRE.FindStringSubmatch(resp.Header.Get("Cache-Control")); m != nil {
		age, _ = strconv.Atoi(m[1])
	}
	c.set, c.expires = set, now.Add(time.Duration(age)*time.Second)
	return set, nil
}

// verifyWith checks token's signature with the key its kid names in set.
func verifyWith(token string, set jose.JSONWebKeySet) (kid string, err error) {
	jws, err := jose.ParseSignedCompact(token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		return "", err
	}
	kid = jws.Signatures[0].Header.KeyID
	keys := set.Key(kid)
	if len(keys) == 0 {
		return kid, fmt.Errorf("kid %q not in the cached JWKS", kid)
	}
	if _, err := jws.Verify(keys[0]); err != nil {
		return kid, err
	}
	return kid, nil
}

// TestKeyRotationUnderLoad rotates the signing key every 4s while
// client_credentials load runs on 3 replicas; every token verifies against
// the JWKS each worker cached from each replica within its max-age, and the
// number of keys that signed matches one rotation per period (replicas do
// not each rotate).
func TestKeyRotationUnderLoad(t *testing.T) {
	rs := redistest.StartServer(t)
	const period = 4 * time.Second
	cl := startInProcessCluster(t, 3, rs.URL(), period)

	const workers, duration = 3, 9 * time.Second
	var (
		mu      sync.Mutex
		signers = map[string]bool{}
		tokens  atomic.Int64
		wg      sync.WaitGroup
	)
	deadline := time.Now().Add(duration)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			caches := make([]*jwksCache, len(cl.Direct))
			for i, u := range cl.Direct {
				caches[i] = &jwksCache{url: u}
			}
			for time.Now().Before(deadline) {
				tr, err := clientCredentials(cl.Issuer)
				if err != nil || tr.status != http.StatusOK {
					t.Errorf("worker %d: client_credentials = %+v, %v", w, tr, err)
					return
				}
				tokens.Add(1)
				for i, c := range caches {
					set, err := c.get(time.Now())
					if err != nil {
						t.Errorf("worker %d: JWKS of replica %d: %v", w, i, err)
						return
					}
					kid, err := verifyWith(tr.AccessToken, set)
					if err != nil {
						t.Errorf("worker %d: token does not verify against the JWKS cached from replica %d (expires %s): %v", w, i, c.expires.Format(time.RFC3339Nano), err)
						return
					}
					mu.Lock()
					signers[kid] = true
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	// At most one key per period, plus the one active at the start and
	// one for a rotation straddling the end.
	limit := int(duration/period) + 2
	t.Logf("%d tokens signed by %d keys in %s", tokens.Load(), len(signers), duration)
	if len(signers) < 2 || len(signers) > limit {
		t.Errorf("%d distinct signing keys in %s with a %s period on 3 replicas, want 2..%d", len(signers), duration, period, limit)
	}
}

// TestSimultaneousRotation: three replicas asked to rotate at the same
// moment produce one new key per rotation they report (overlapping calls
// collapse into one), and all of them then publish the same set.
func TestSimultaneousRotation(t *testing.T) {
	rs := redistest.StartServer(t)
	cl := startInProcessCluster(t, 3, rs.URL(), 0)
	ctx := context.Background()
	kids := func(in *broker.Instance) map[string]bool {
		body, _ := in.Keys.JWKS()
		var set jose.JSONWebKeySet
		if err := json.Unmarshal(body, &set); err != nil {
			t.Fatal(err)
		}
		m := map[string]bool{}
		for _, k := range set.Keys {
			m[k.KeyID] = true
		}
		return m
	}
	before := kids(cl.Instances[0])
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make([]error, len(cl.Instances))
	for i, in := range cl.Instances {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = in.Keys.RotateNow(ctx)
		}()
	}
	close(start)
	wg.Wait()
	t.Logf("RotateNow results: %v", errs)
	for _, in := range cl.Instances {
		if err := in.Keys.Sync(ctx); err != nil {
			t.Fatalf("Sync: %v", err)
		}
	}
	after := kids(cl.Instances[0])
	var added []string
	for k := range after {
		if !before[k] {
			added = append(added, k)
		}
	}
	// Calls that overlap collapse into one rotation. A replica whose call
	// starts only after the key-set notification of another's rotation
	// reached it (a goroutine scheduled late on a loaded machine) rotates
	// again, as asked, and says so: every nil result is exactly one new
	// key, never more, and at least one call rotated.
	rotated := 0
	for _, err := range errs {
		switch {
		case err == nil:
			rotated++
		case !errors.Is(err, keys.ErrAlreadyRotated):
			t.Errorf("RotateNow: %v, want nil or ErrAlreadyRotated", err)
		}
	}
	if rotated == 0 || len(added) != rotated {
		t.Errorf("simultaneous rotation on 3 replicas added keys %v for %d rotations reported (%v), want one key per rotation and at least one", added, rotated, errs)
	}
	for i, in := range cl.Instances[1:] {
		if got := kids(in); fmt.Sprint(got) != fmt.Sprint(after) {
			t.Errorf("replica %d publishes %v, replica 0 %v", i+1, got, after)
		}
	}
}
