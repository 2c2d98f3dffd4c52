package keys

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestSignCompactIsSign: SignCompact writes the token Sign writes — the
// same protected header and payload segments, and for EdDSA (whose
// signatures are deterministic) the same token — and Verify accepts it,
// for every algorithm and typ, with the key that Sign uses.
func TestSignCompactIsSign(t *testing.T) {
	clk := newClock()
	m, err := New(context.Background(), newStore(clk), Options{Algorithm: "ES256", Algorithms: []string{"RS256", "EdDSA"},
		Now: clk.Now, KEK: make([]byte, 32), MaxTokenLifetime: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	payload := []byte(`{"iss":"https://broker.test","sub":"alice","name":"Zoë <admin> & co"}`)
	for _, alg := range []string{"", "ES256", "RS256", "EdDSA"} {
		for _, typ := range []string{"JWT", "at+jwt", ""} {
			want, err := m.Sign(alg, payload, typ)
			if err != nil {
				t.Fatal(err)
			}
			for range 2 { // the second from the cached signer
				got, err := m.SignCompact(alg, payload, typ)
				if err != nil {
					t.Fatalf("SignCompact(%q, %q) = %v", alg, typ, err)
				}
				g, w := strings.Split(got, "."), strings.Split(want, ".")
				if len(g) != 3 || g[0] != w[0] || g[1] != w[1] {
					t.Errorf("SignCompact(%q, %q) = %s, want header and payload of %s", alg, typ, got, want)
				}
				if alg == "EdDSA" && got != want {
					t.Errorf("SignCompact(EdDSA, %q) = %s, want %s", typ, got, want)
				}
				p, gotTyp, err := m.Verify(got)
				if err != nil || string(p) != string(payload) || gotTyp != typ {
					t.Errorf("Verify(SignCompact(%q, %q)) = %s, %q, %v", alg, typ, p, gotTyp, err)
				}
			}
		}
	}
	if _, err := m.SignCompact("PS256", payload, "JWT"); err == nil {
		t.Error("SignCompact(PS256) succeeded without a PS256 key")
	}
}

func benchSignCompact(b *testing.B, alg string) {
	m := benchManager(b, alg)
	p := benchPayload(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.SignCompact("", p, "JWT"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSignCompactES256(b *testing.B) { benchSignCompact(b, "ES256") }
func BenchmarkSignCompactEdDSA(b *testing.B) { benchSignCompact(b, "EdDSA") }
