package keys

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"

	"github.com/fedbroker/fedbroker/broker/storage"
	"github.com/fedbroker/fedbroker/broker/storage/memory"
)

// clock is a settable test clock shared by the Manager and the store.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

const issuer = "https://broker.example"

var allAlgs = []string{"ES256", "RS256", "EdDSA"}

func newStore(clk *clock) *memory.Store { return memory.New(memory.WithClock(clk.Now)) }

func newManager(t testing.TB, store storage.Storage, clk *clock, opts Options) *Manager {
	t.Helper()
	if opts.Now == nil {
		opts.Now = clk.Now
	}
	if opts.MaxTokenLifetime == 0 {
		opts.MaxTokenLifetime = time.Hour
	}
	if opts.KEK == nil {
		opts.KEK = bytes.Repeat([]byte{7}, 32)
	}
	m, err := New(context.Background(), store, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return m
}

// claims returns an encoded ID-token payload valid at now.
func claims(t testing.TB, now time.Time) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{
		"iss": issuer, "sub": "alice", "aud": "app",
		"iat": now.Unix(), "exp": now.Add(10 * time.Minute).Unix(),
		"email": "alice@example.com", "groups": []string{"eng", "ops"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// header returns the protected header of a compact JWS.
func header(t testing.TB, tok string) jose.Header {
	t.Helper()
	jws, err := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{jose.ES256, jose.RS256, jose.EdDSA})
	if err != nil {
		t.Fatalf("ParseSignedCompact: %v", err)
	}
	return jws.Signatures[0].Protected
}

// jwks decodes the Manager's published key set.
func jwks(t testing.TB, m *Manager) jose.JSONWebKeySet {
	t.Helper()
	body, _ := m.JWKS()
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		t.Fatalf("JWKS body %s: %v", body, err)
	}
	return set
}

// kids returns the published key ids of alg.
func kids(t testing.TB, m *Manager, alg string) []string {
	t.Helper()
	var out []string
	for _, k := range jwks(t, m).Keys {
		if k.Algorithm == alg {
			out = append(out, k.KeyID)
		}
	}
	return out
}

func TestSignVerifyEachAlgorithm(t *testing.T) {
	clk := newClock()
	m := newManager(t, newStore(clk), clk, Options{Algorithm: "ES256", Algorithms: []string{"RS256", "EdDSA"}})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, etag := m.JWKS()
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("ETag", etag)
		_, _ = w.Write(body)
	}))
	defer srv.Close()
	ctx := context.Background()

	if got, want := m.Algorithms(), allAlgs; !cmp.Equal(got, want) {
		t.Fatalf("Algorithms() = %v, want %v", got, want)
	}
	for _, alg := range allAlgs {
		t.Run(alg, func(t *testing.T) {
			payload := claims(t, clk.Now())
			tok, err := m.Sign(alg, payload, "JWT")
			if err != nil {
				t.Fatalf("Sign(%s): %v", alg, err)
			}
			h := header(t, tok)
			if h.Algorithm != alg || h.ExtraHeaders[jose.HeaderType] != "JWT" {
				t.Errorf("header alg=%q typ=%v, want %s JWT", h.Algorithm, h.ExtraHeaders[jose.HeaderType], alg)
			}
			if got := kids(t, m, alg); len(got) != 2 || got[0] != h.KeyID {
				t.Errorf("JWKS %s kids = %v, want [active=%s next]", alg, got, h.KeyID)
			}

			// go-jose against the published JWKS.
			set := jwks(t, m)
			pub := set.Key(h.KeyID)
			if len(pub) != 1 {
				t.Fatalf("JWKS has %d keys with kid %s, want 1", len(pub), h.KeyID)
			}
			jws, err := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(alg)})
			if err != nil {
				t.Fatal(err)
			}
			got, err := jws.Verify(pub[0])
			if err != nil || !bytes.Equal(got, payload) {
				t.Errorf("go-jose Verify = %s, %v; want the payload", got, err)
			}

			// go-oidc against the JWKS served over HTTP.
			v := oidc.NewVerifier(issuer, oidc.NewRemoteKeySet(ctx, srv.URL), &oidc.Config{
				ClientID: "app", SupportedSigningAlgs: []string{alg}, Now: clk.Now,
			})
			idt, err := v.Verify(ctx, tok)
			if err != nil {
				t.Fatalf("oidc Verify: %v", err)
			}
			if idt.Subject != "alice" {
				t.Errorf("oidc subject = %q, want alice", idt.Subject)
			}

			// Our own Verify, with and without an allowlist.
			for _, allow := range [][]string{nil, {alg}} {
				p, typ, err := m.Verify(tok, allow...)
				if err != nil || !bytes.Equal(p, payload) || typ != "JWT" {
					t.Errorf("Verify(allow %v) = %s, %q, %v; want payload, JWT", allow, p, typ, err)
				}
			}
		})
	}
}

func TestSignDefaultsAndTyp(t *testing.T) {
	clk := newClock()
	m := newManager(t, newStore(clk), clk, Options{})
	if got, want := m.Algorithms(), []string{"ES256"}; !cmp.Equal(got, want) {
		t.Fatalf("Algorithms() = %v, want %v", got, want)
	}
	tests := []struct {
		alg, typ, wantAlg string
	}{
		{"", "JWT", "ES256"},
		{"", "at+jwt", "ES256"},
		{"ES256", "", "ES256"},
	}
	for _, tc := range tests {
		tok, err := m.Sign(tc.alg, []byte(`{"sub":"x"}`), tc.typ)
		if err != nil {
			t.Fatalf("Sign(%q, %q): %v", tc.alg, tc.typ, err)
		}
		h := header(t, tok)
		typ, _ := h.ExtraHeaders[jose.HeaderType].(string)
		if h.Algorithm != tc.wantAlg || typ != tc.typ || h.KeyID == "" {
			t.Errorf("Sign(%q, %q) header alg=%q typ=%q kid=%q, want %s %q and a kid", tc.alg, tc.typ, h.Algorithm, typ, h.KeyID, tc.wantAlg, tc.typ)
		}
		if _, gotTyp, err := m.Verify(tok); err != nil || gotTyp != tc.typ {
			t.Errorf("Verify = typ %q, %v; want %q", gotTyp, err, tc.typ)
		}
	}
	if _, err := m.Sign("RS256", []byte(`{}`), "JWT"); err == nil {
		t.Error("Sign(RS256) with only ES256 configured = nil error")
	}
	if got := m.MaxAge(); got != time.Hour {
		t.Errorf("MaxAge() = %v, want 1h for a 24h rotation", got)
	}
	if !m.Ready() {
		t.Error("Ready() = false after New")
	}
}

func TestMaxAgeWellUnderRotation(t *testing.T) {
	clk := newClock()
	for _, rot := range []time.Duration{time.Hour, 24 * time.Hour, 10 * time.Minute} {
		m := newManager(t, newStore(clk), clk, Options{RotationPeriod: rot})
		if got := m.MaxAge(); got > rot/4 || got <= 0 {
			t.Errorf("MaxAge() with rotation %v = %v, want in (0, %v]", rot, got, rot/4)
		}
		if got := m.syncInterval(); got >= m.MaxAge() {
			t.Errorf("sync interval %v not below MaxAge %v", got, m.MaxAge())
		}
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	clk := newClock()
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"unknown alg", Options{Algorithm: "HS256"}, "unsupported algorithm"},
		{"none", Options{Algorithms: []string{"none"}}, "unsupported algorithm"},
		{"short KEK", Options{KEK: []byte("short")}, "32"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Now = clk.Now
			_, err := New(context.Background(), newStore(clk), tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New(%+v) error = %v, want one containing %q", tc.opts, err, tc.want)
			}
		})
	}
	if _, err := New(context.Background(), nil, Options{}); err == nil {
		t.Error("New with no storage and no static keys = nil error")
	}
}

func TestRestartSignsWithSameKey(t *testing.T) {
	clk := newClock()
	store := newStore(clk)
	opts := Options{Algorithms: []string{"EdDSA"}}
	m1 := newManager(t, store, clk, opts)
	m2 := newManager(t, store, clk, opts)
	for _, alg := range []string{"ES256", "EdDSA"} {
		t1, _ := m1.Sign(alg, []byte(`{}`), "JWT")
		t2, _ := m2.Sign(alg, []byte(`{}`), "JWT")
		if k1, k2 := header(t, t1).KeyID, header(t, t2).KeyID; k1 != k2 {
			t.Errorf("%s: restarted Manager signs with kid %s, first with %s", alg, k2, k1)
		}
		if _, _, err := m1.Verify(t2); err != nil {
			t.Errorf("first Manager rejects the second's %s token: %v", alg, err)
		}
	}
	if d := cmp.Diff(jwks(t, m1), jwks(t, m2)); d != "" {
		t.Errorf("JWKS differ between Managers on one store (-first +second):\n%s", d)
	}

	// A Manager configured with one more algorithm adds its keys without
	// touching the existing ones.
	m3 := newManager(t, store, clk, Options{Algorithms: []string{"EdDSA", "RS256"}})
	for _, alg := range []string{"ES256", "EdDSA"} {
		if got, want := kids(t, m3, alg), kids(t, m1, alg); !cmp.Equal(got, want) {
			t.Errorf("%s kids after adding RS256 = %v, want unchanged %v", alg, got, want)
		}
	}
	if got := kids(t, m3, "RS256"); len(got) != 2 {
		t.Errorf("RS256 kids = %v, want active and next", got)
	}
}

func TestConcurrentNewCreatesOneSet(t *testing.T) {
	for range 10 {
		clk := newClock()
		store := newStore(clk)
		const n = 4
		ms := make([]*Manager, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { ms[i] = newManager(t, store, clk, Options{}) })
		}
		wg.Wait()
		want := kids(t, ms[0], "ES256")
		for i, m := range ms[1:] {
			if got := kids(t, m, "ES256"); !cmp.Equal(got, want) {
				t.Fatalf("Manager %d kids = %v, want %v", i+1, got, want)
			}
		}
	}
}

func writePEM(t *testing.T, typ string, der []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestStaticKeys(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ec2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	ecSEC1, _ := x509.MarshalECPrivateKey(ec)
	ec2P8, _ := x509.MarshalPKCS8PrivateKey(ec2)
	edP8, _ := x509.MarshalPKCS8PrivateKey(ed)
	static := []StaticKey{
		{File: writePEM(t, "EC PRIVATE KEY", ecSEC1), KeyID: "ec-1"},
		{File: writePEM(t, "PRIVATE KEY", ec2P8)},
		{File: writePEM(t, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rk)), KeyID: "rsa-1"},
		{File: writePEM(t, "PRIVATE KEY", edP8), KeyID: "ed-1"},
	}
	clk := newClock()
	m, err := New(context.Background(), nil, Options{
		Algorithms: []string{"RS256", "EdDSA"}, StaticKeys: static, Now: clk.Now,
	})
	if err != nil {
		t.Fatalf("New with static keys: %v", err)
	}
	ec2Kid, _ := thumbprint(ec2.Public())
	for alg, want := range map[string][]string{"ES256": {"ec-1", ec2Kid}, "RS256": {"rsa-1"}, "EdDSA": {"ed-1"}} {
		if got := kids(t, m, alg); !cmp.Equal(got, want) {
			t.Errorf("%s kids = %v, want %v", alg, got, want)
		}
		tok, err := m.Sign(alg, []byte(`{"a":1}`), "JWT")
		if err != nil {
			t.Fatalf("Sign(%s): %v", alg, err)
		}
		if got := header(t, tok).KeyID; got != want[0] {
			t.Errorf("Sign(%s) kid = %s, want %s", alg, got, want[0])
		}
		if _, _, err := m.Verify(tok); err != nil {
			t.Errorf("Verify(%s): %v", alg, err)
		}
	}
	if err := m.RotateNow(context.Background()); err != ErrStatic {
		t.Errorf("RotateNow with static keys = %v, want ErrStatic", err)
	}
	if err := m.Sync(context.Background()); err != nil {
		t.Errorf("Sync with static keys = %v, want nil", err)
	}

	bad := []struct {
		name string
		keys []StaticKey
	}{
		{"missing file", []StaticKey{{File: filepath.Join(t.TempDir(), "nope.pem")}}},
		{"not PEM", []StaticKey{{File: writePEM(t, "CERTIFICATE", []byte("junk"))}}},
		{"corrupt key", []StaticKey{{File: writePEM(t, "PRIVATE KEY", []byte("junk"))}}},
		{"no key for a configured alg", static[:1]},
		{"duplicate kid", []StaticKey{static[0], {File: static[1].File, KeyID: "ec-1"}, static[2], static[3]}},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(context.Background(), nil, Options{Algorithms: []string{"RS256", "EdDSA"}, StaticKeys: tc.keys})
			if err == nil {
				t.Errorf("New(%s) = nil error", tc.name)
			}
		})
	}
}

// logBuffer is a slog handler target for asserting on log output.
func logBuffer() (*slog.Logger, *bytes.Buffer) {
	var buf bytes.Buffer
	return slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})), &buf
}
