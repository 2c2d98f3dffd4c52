package config

import (
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestDPoPConfig: tokens.dpop and clients[].require_dpop are read, their
// defaults applied by the accessors, and every bad value is named by its
// YAML path.
func TestDPoPConfig(t *testing.T) {
	const iss = "issuer: https://sso.example.com\n"
	const kek = "signing: {key_encryption_key: AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8}\n"
	const redis = "storage: {type: redis, redis: {url: 'redis://redis:6379/0'}}\n"
	tests := []struct {
		name string
		yml  string
		want []string
	}{
		{"defaults", iss, nil},
		{"all set", iss + "tokens: {dpop: {nonce: true, nonce_lifetime: 10m, max_skew: 30s}}\n", nil},
		{"negative lifetime", iss + "tokens: {dpop: {nonce_lifetime: -1m}}\n", []string{"tokens.dpop.nonce_lifetime"}},
		{"lifetime too short", iss + "tokens: {dpop: {nonce_lifetime: 5s}}\n", []string{"tokens.dpop.nonce_lifetime"}},
		{"lifetime too long", iss + "tokens: {dpop: {nonce_lifetime: 2h}}\n", []string{"tokens.dpop.nonce_lifetime"}},
		{"negative skew", iss + "tokens: {dpop: {max_skew: -1s}}\n", []string{"tokens.dpop.max_skew"}},
		{"skew too large", iss + "tokens: {dpop: {max_skew: 1h}}\n", []string{"tokens.dpop.max_skew"}},
		{"unknown key", iss + "tokens: {dpop: {nonces: true}}\n", []string{"tokens.dpop.nonces"}},
		{"not a bool", iss + "tokens: {dpop: {nonce: sometimes}}\n", []string{"tokens.dpop.nonce"}},
		{"nonce on shared storage without kek", iss + redis + "tokens: {dpop: {nonce: true}}\n", []string{"tokens.dpop.nonce"}},
		{"nonce on shared storage with kek", iss + redis + kek + "tokens: {dpop: {nonce: true}}\n", nil},
		{"nonce in memory without kek", iss + "storage: {type: memory}\ntokens: {dpop: {nonce: true}}\n", nil},
		{"require_dpop", iss + "clients:\n  - {id: a, public: true, redirect_uris: [https://a.example.com/cb], require_dpop: true}\n", nil},
		{"require_dpop not a bool", iss + "clients:\n  - {id: a, public: true, redirect_uris: [https://a.example.com/cb], require_dpop: often}\n", []string{"clients[0].require_dpop"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse(fill(tt.yml), noEnv)
			if tt.want == nil {
				if err != nil || cfg == nil {
					t.Fatalf("Parse = %v, want a configuration", err)
				}
				return
			}
			if diff := cmp.Diff(tt.want, paths(t, err)); diff != "" {
				t.Errorf("problem paths (-want +got):\n%s\nerror:\n%v", diff, err)
			}
		})
	}
	cfg, err := Parse(fill(iss+"tokens: {dpop: {nonce: true, nonce_lifetime: 10m, max_skew: 30s}}\nclients:\n  - {id: a, public: true, redirect_uris: [https://a.example.com/cb], require_dpop: true}\n"), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if d := cfg.Tokens.DPoP; !d.Nonce || d.NonceTTL() != 10*time.Minute || d.Skew() != 30*time.Second || !cfg.Clients[0].RequireDPoP {
		t.Errorf("tokens.dpop = %+v, require_dpop = %v", d, cfg.Clients[0].RequireDPoP)
	}
	if d := (DPoP{}); d.Nonce || d.NonceTTL() != DefaultDPoPNonceLifetime || d.Skew() != DefaultDPoPSkew {
		t.Errorf("zero DPoP = nonce %v, lifetime %s, skew %s; want off, the defaults", d.Nonce, d.NonceTTL(), d.Skew())
	}
}

// TestDPoPDiff: the DPoP options are classified on reload by their
// sections: tokens.dpop and clients[].require_dpop are applied without a
// restart (both sections are reloadable).
func TestDPoPDiff(t *testing.T) {
	old := parseDiffConfig(t, diffBase)
	y := replaceOnce(t, diffBase, "  access_token: 5m\n", "  access_token: 5m\n  dpop: {nonce: true, max_skew: 30s}\n")
	y = replaceOnce(t, y, "    name: App\n", "    name: App\n    require_dpop: true\n")
	got := changeStrings(Diff(old, parseDiffConfig(t, y)))
	want := []string{"tokens.dpop.nonce changed", "tokens.dpop.max_skew changed", "clients[app].require_dpop changed"}
	if !slices.Equal(got, want) {
		t.Errorf("Diff = %q, want %q", got, want)
	}
	for _, c := range Diff(old, parseDiffConfig(t, y)) {
		if s := c.Section(); s != "tokens" && s != "clients" {
			t.Errorf("%s is in section %q, want tokens or clients", c, s)
		}
	}
}
