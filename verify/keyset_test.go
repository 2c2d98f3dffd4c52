package verify

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

func TestNewDiscovery(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(is *testIssuer)
		issuer  func(is *testIssuer) string
		wantErr string
	}{
		{
			name:    "discovery issuer mismatch",
			prepare: func(is *testIssuer) { is.discoveryIssuer = "https://other.example" },
			wantErr: "does not equal configured issuer",
		},
		{
			name:    "configured issuer with trailing slash",
			issuer:  func(is *testIssuer) string { return is.url() + "/" },
			wantErr: "does not equal configured issuer",
		},
		{
			name:    "relative jwks_uri",
			prepare: func(is *testIssuer) { is.jwksURI = "/keys" },
			wantErr: "no absolute jwks_uri",
		},
		{
			name:    "missing jwks_uri",
			prepare: func(is *testIssuer) { is.jwksURI = "-" },
			wantErr: "no absolute jwks_uri",
		},
		{
			name:    "issuer down",
			prepare: func(is *testIssuer) { is.down = true },
			wantErr: "503",
		},
		{
			name:    "no discovery document",
			issuer:  func(is *testIssuer) string { return is.url() + "/nowhere" },
			wantErr: "404",
		},
		{
			name: "only symmetric keys",
			prepare: func(is *testIssuer) {
				is.published = nil
				is.extraJWKS = []json.RawMessage{json.RawMessage(`{"kty":"oct","kid":"h","k":"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI"}`)}
			},
			wantErr: "no usable public signing key",
		},
		{
			name: "only encryption keys",
			prepare: func(is *testIssuer) {
				k := newKey(t, jose.ES256)
				b, _ := json.Marshal(jose.JSONWebKey{Key: k.priv.Public(), KeyID: "enc", Use: "enc"})
				is.published = nil
				is.extraJWKS = []json.RawMessage{b}
			},
			wantErr: "no usable public signing key",
		},
		{
			name: "private key published",
			prepare: func(is *testIssuer) {
				k := newKey(t, jose.ES256)
				b, _ := json.Marshal(jose.JSONWebKey{Key: k.priv, KeyID: "priv", Use: "sig"})
				is.published = nil
				is.extraJWKS = []json.RawMessage{b}
			},
			wantErr: "no usable public signing key",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			is := newTestIssuer(t, newFakeClock())
			is.publish(newKey(t, jose.ES256))
			if tt.prepare != nil {
				tt.prepare(is)
			}
			issuer := is.url()
			if tt.issuer != nil {
				issuer = tt.issuer(is)
			}
			v, err := New(t.Context(), issuer, testAudience)
			if err == nil {
				v.Close()
				t.Fatalf("New() error = nil, want %q", tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("New() error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestSkipsUnusableKeys(t *testing.T) {
	clock := newFakeClock()
	is := newTestIssuer(t, clock)
	k := newKey(t, jose.ES256)
	is.publish(k)
	is.extraJWKS = []json.RawMessage{
		json.RawMessage(`{"kty":"oct","kid":"hmac","k":"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI"}`),
		json.RawMessage(`{"kty":"future-kty","kid":"future"}`),
	}
	v, err := New(t.Context(), is.url(), testAudience, WithClock(clock.now))
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	defer v.Close()
	if _, err := v.Verify(t.Context(), sign(t, k, "at+jwt", is.claims())); err != nil {
		t.Errorf("Verify() error = %v, want nil", err)
	}
	secret := []byte("secretsecretsecretsecretsecret12")
	forged := signWith(t, jose.SigningKey{Algorithm: jose.HS256, Key: secret},
		(&jose.SignerOptions{}).WithType("at+jwt").WithHeader("kid", "hmac"), is.claims())
	if _, err := v.Verify(t.Context(), forged); !errors.Is(err, ErrInvalidSignature) {
		t.Errorf("Verify(HS256 with published oct key) error = %v, want ErrInvalidSignature", err)
	}
}

func TestMaxAge(t *testing.T) {
	tests := []struct {
		header []string
		want   time.Duration
	}{
		{nil, defaultMaxAge},
		{[]string{"public, max-age=600"}, 600 * time.Second},
		{[]string{"max-age=\"120\""}, 120 * time.Second},
		{[]string{"MAX-AGE=90, must-revalidate"}, 90 * time.Second},
		{[]string{"max-age=1"}, minMaxAge},
		{[]string{"max-age=999999999999999"}, maxMaxAge},
		{[]string{"max-age=-5"}, defaultMaxAge},
		{[]string{"max-age=abc"}, defaultMaxAge},
		{[]string{"no-store"}, minMaxAge},
		{[]string{"public", "max-age=300"}, 300 * time.Second},
	}
	for _, tt := range tests {
		h := http.Header{}
		for _, v := range tt.header {
			h.Add("Cache-Control", v)
		}
		if got := maxAge(h); got != tt.want {
			t.Errorf("maxAge(%q) = %v, want %v", tt.header, got, tt.want)
		}
	}
}

func TestUnknownKidFloodIsRateLimited(t *testing.T) {
	is, _, v, clock := setup(t, WithRefreshInterval(time.Minute))
	attacker := newKey(t, jose.ES256)
	before := is.hits()

	const n = 1000
	tokens := make([]string, n)
	for i := range tokens {
		tokens[i] = sign(t, testKey{kid: fmt.Sprintf("random-%d", i), alg: jose.ES256, priv: attacker.priv}, "at+jwt", is.claims())
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < n; i += 8 {
				if _, err := v.Verify(t.Context(), tokens[i]); !errors.Is(err, ErrUnknownKey) {
					errs <- fmt.Errorf("Verify(random kid %d) error = %v, want ErrUnknownKey", i, err)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := is.hits() - before; got < 1 || got > 2 {
		t.Errorf("JWKS fetches for %d random kids = %d, want 1 or 2", n, got)
	}

	// After the interval one more miss may fetch again, and only one.
	clock.advance(time.Minute)
	before = is.hits()
	for i := range 100 {
		_, _ = v.Verify(t.Context(), tokens[i])
	}
	if got := is.hits() - before; got != 1 {
		t.Errorf("JWKS fetches for 100 random kids after the interval = %d, want 1", got)
	}
}

func TestKeyRotationWithoutRestart(t *testing.T) {
	is, old, v, clock := setup(t)
	if _, err := v.Verify(t.Context(), sign(t, old, "at+jwt", is.claims())); err != nil {
		t.Fatalf("Verify(old key) error = %v", err)
	}

	// The broker publishes a new key and signs with it: the unknown kid
	// triggers exactly one refresh.
	next := newKey(t, jose.ES256)
	is.publish(next)
	before := is.hits()
	for range 10 {
		if _, err := v.Verify(t.Context(), sign(t, next, "at+jwt", is.claims())); err != nil {
			t.Fatalf("Verify(new key) error = %v, want nil", err)
		}
	}
	if got := is.hits() - before; got != 1 {
		t.Errorf("JWKS fetches after rotation = %d, want 1", got)
	}
	if _, err := v.Verify(t.Context(), sign(t, old, "at+jwt", is.claims())); err != nil {
		t.Errorf("Verify(old key, still published) error = %v, want nil", err)
	}

	// The broker retires the old key; the background refresh before
	// max-age drops it without a restart.
	is.unpublish(old.kid)
	before = is.hits()
	clock.advance(4 * time.Minute) // past 3/4 of max-age=300
	_, _ = v.Verify(t.Context(), sign(t, next, "at+jwt", is.claims()))
	waitFor(t, "background refresh", func() bool { return v.keys.fetchCount() > 0 && is.hits() > before && len(v.keys.lookup(old.kid)) == 0 })
	if _, err := v.Verify(t.Context(), sign(t, old, "at+jwt", is.claims())); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("Verify(retired key) error = %v, want ErrUnknownKey", err)
	}
}

func TestBackgroundRefreshBeforeMaxAge(t *testing.T) {
	is, k, v, clock := setup(t)
	before := is.hits()
	clock.advance(3 * time.Minute) // under 3/4 of 300 s: not due
	if _, err := v.Verify(t.Context(), sign(t, k, "at+jwt", is.claims())); err != nil {
		t.Fatal(err)
	}
	// A background fetch here would be a bug; give it a moment to show.
	time.Sleep(50 * time.Millisecond)
	if got := is.hits(); got != before {
		t.Errorf("JWKS fetches before 3/4 of max-age = %d, want %d", got-before, 0)
	}
	clock.advance(46 * time.Second) // past 225 s
	if _, err := v.Verify(t.Context(), sign(t, k, "at+jwt", is.claims())); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "refresh before max-age", func() bool { return is.hits() == before+1 })
}

func TestBrokerDownForAMinute(t *testing.T) {
	is, k, v, clock := setup(t)
	if _, err := v.Verify(t.Context(), sign(t, k, "at+jwt", is.claims())); err != nil {
		t.Fatal(err)
	}
	is.setDown(true)
	clock.advance(6 * time.Minute) // the cache's max-age has run out

	// For a minute of (injected) time, tokens keep verifying from the last
	// good key set while refreshes fail and back off.
	for range 12 {
		clock.advance(5 * time.Second)
		if _, err := v.Verify(t.Context(), sign(t, k, "at+jwt", is.claims())); err != nil {
			t.Fatalf("Verify() with broker down error = %v, want nil", err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	waitFor(t, "a failed refresh", func() bool {
		v.keys.mu.RLock()
		defer v.keys.mu.RUnlock()
		return v.keys.failures > 0
	})
	if n := is.hits(); n > 20 {
		t.Errorf("JWKS fetches while down = %d; want backoff to bound them", n)
	}

	// The broker comes back with a rotated key; the next due refresh picks
	// it up without any token naming it.
	next := newKey(t, jose.EdDSA)
	is.publish(next)
	is.setDown(false)
	clock.advance(maxRetryBackoff)
	if _, err := v.Verify(t.Context(), sign(t, k, "at+jwt", is.claims())); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "refresh after recovery", func() bool {
		return len(v.keys.lookup(next.kid)) == 1
	})
	if _, err := v.Verify(t.Context(), sign(t, next, "at+jwt", is.claims())); err != nil {
		t.Errorf("Verify(new key after recovery) error = %v, want nil", err)
	}
}

func TestBrokerGoneKeepsCachedKeys(t *testing.T) {
	is, k, v, clock := setup(t, WithRefreshInterval(time.Second))
	is.srv.Close()
	stranger := newKey(t, jose.ES256)
	for range 10 {
		clock.advance(time.Minute)
		if _, err := v.Verify(t.Context(), sign(t, k, "at+jwt", is.claims())); err != nil {
			t.Fatalf("Verify() with server closed error = %v, want nil", err)
		}
		if _, err := v.Verify(t.Context(), sign(t, stranger, "at+jwt", is.claims())); !errors.Is(err, ErrUnknownKey) {
			t.Fatalf("Verify(unknown kid, server closed) error = %v, want ErrUnknownKey", err)
		}
	}
}

func TestCloseIsIdempotent(t *testing.T) {
	is, k, v, _ := setup(t)
	v.Close()
	v.Close()
	if _, err := v.Verify(t.Context(), sign(t, k, "at+jwt", is.claims())); err != nil {
		t.Errorf("Verify() after Close error = %v, want nil", err)
	}
}

func TestConcurrentVerifyDuringRotation(t *testing.T) {
	is, k, v, clock := setup(t, WithRefreshInterval(time.Second))
	const workers = 4
	var (
		mu   sync.Mutex
		keys = []testKey{k} // published keys, newest last
		// verified[w] is the index in keys of the key that signed the
		// last token worker w finished verifying.
		verified [workers]atomic.Int64
		wg       sync.WaitGroup
		stop     = make(chan struct{})
		errs     = make(chan error, 100)
	)
	stopWorkers := sync.OnceFunc(func() {
		close(stop)
		wg.Wait()
	})
	defer stopWorkers()
	for w := range workers {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				mu.Lock()
				i := len(keys) - 1
				key := keys[i]
				mu.Unlock()
				if _, err := v.Verify(t.Context(), sign(t, key, "at+jwt", is.claims())); err != nil {
					select {
					case errs <- fmt.Errorf("kid %s: %w", key.kid, err):
					default:
					}
				}
				verified[w].Store(int64(i))
			}
		})
	}
	for i := 1; i <= 5; i++ {
		// Each rotation happens at a later (injected) time than the
		// previous one, as a broker's rotations do, so the kid-miss rate
		// limit never applies to two rotations at once.
		clock.advance(2 * time.Minute)
		nk := newKey(t, []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA}[i%2])
		is.publish(nk)
		mu.Lock()
		keys = append(keys, nk)
		mu.Unlock()
		// The workers, not wall time, pace the rotations: the next one
		// waits until every worker has verified a token signed with the
		// new key. So however slowly a worker is scheduled, a token is
		// verified at most one clock step after it was signed, well within
		// its lifetime, and every key ID that misses the cache during a
		// step is the key published in that step.
		waitFor(t, fmt.Sprintf("every worker to verify a token of rotation %d", i), func() bool {
			for w := range verified {
				if verified[w].Load() < int64(i) {
					return false
				}
			}
			return true
		})
	}
	stopWorkers()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent Verify() error = %v", err)
	}
}

func TestNewRefusesPlainHTTPKeysForHTTPSIssuer(t *testing.T) {
	var srv *httptest.Server
	srv = newTLSDiscovery(t, func() string { return srv.URL }, "http://keys.example.invalid/keys")
	v, err := New(t.Context(), srv.URL, testAudience, WithHTTPClient(srv.Client()))
	if err == nil {
		v.Close()
		t.Fatal("New() error = nil, want refusal of an http jwks_uri for an https issuer")
	}
	if !strings.Contains(err.Error(), "not https") {
		t.Errorf("New() error = %v, want it to mention https", err)
	}
}
