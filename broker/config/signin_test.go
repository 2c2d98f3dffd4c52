package config

import (
	"errors"
	"testing"
	"time"
)

// TestSignInLimit: http.sign_in_limit is a token bucket per client
// address; unset it is DefaultSignInLimit, and a bucket that could never
// admit a sign-in is refused at its YAML path.
func TestSignInLimit(t *testing.T) {
	const iss = "issuer: https://sso.example.com\n"
	for _, tc := range []struct {
		yml  string
		want RateLimit
	}{
		{iss, DefaultSignInLimit},
		{iss + "http: {sign_in_limit: {burst: 500, every: 1s}}\n", RateLimit{Burst: 500, Every: time.Second}},
	} {
		cfg, err := Parse([]byte(tc.yml), noEnv)
		if err != nil {
			t.Fatalf("Parse(%q): %v", tc.yml, err)
		}
		if got := cfg.HTTP.SignIns(); got != tc.want {
			t.Errorf("Parse(%q).HTTP.SignIns() = %+v, want %+v", tc.yml, got, tc.want)
		}
	}
	for _, tc := range []struct{ yml, path string }{
		{"{burst: 0, every: 1s}", "http.sign_in_limit.burst"},
		{"{burst: -5, every: 1s}", "http.sign_in_limit.burst"},
		{"{burst: 2000000, every: 1s}", "http.sign_in_limit.burst"},
		{"{burst: 10}", "http.sign_in_limit.every"},
		{"{burst: 10, every: -1s}", "http.sign_in_limit.every"},
	} {
		_, err := Parse([]byte(iss+"http: {sign_in_limit: "+tc.yml+"}\n"), noEnv)
		var ps Errors
		if !errors.As(err, &ps) || len(ps) != 1 || ps[0].Path != tc.path {
			t.Errorf("sign_in_limit %s: err = %v, want one problem at %s", tc.yml, err, tc.path)
		}
	}
}
