package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestHSTSMaxAge: http.hsts_max_age is a Go duration; unset means one
// year, 0s turns HSTS off, and a negative or sub-second value is refused
// at its YAML path.
func TestHSTSMaxAge(t *testing.T) {
	const iss = "issuer: https://sso.example.com\n"
	for _, tc := range []struct {
		yml  string
		want time.Duration
	}{
		{iss, 365 * 24 * time.Hour},
		{iss + "http: {hsts_max_age: 0s}\n", 0},
		{iss + "http: {hsts_max_age: 1h}\n", time.Hour},
		{iss + "http: {hsts_max_age: 17520h}\n", 2 * 365 * 24 * time.Hour},
	} {
		cfg, err := Parse([]byte(tc.yml), noEnv)
		if err != nil {
			t.Fatalf("Parse(%q): %v", tc.yml, err)
		}
		if got := cfg.HTTP.HSTS(); got != tc.want {
			t.Errorf("Parse(%q).HTTP.HSTS() = %v, want %v", tc.yml, got, tc.want)
		}
		if got := (HTTP{HSTSMaxAge: cfg.HTTP.HSTSMaxAge}).HSTS(); got != tc.want {
			t.Errorf("HSTS() of a copy = %v, want %v", got, tc.want)
		}
	}
	for _, bad := range []string{"-1s", "-8760h", "500ms", "31536000", "1 year"} {
		_, err := Parse([]byte(iss+"http: {hsts_max_age: "+bad+"}\n"), noEnv)
		var ps Errors
		if !errors.As(err, &ps) || len(ps) != 1 || ps[0].Path != "http.hsts_max_age" {
			t.Errorf("hsts_max_age %s: err = %v, want one problem at http.hsts_max_age", bad, err)
			continue
		}
		if strings.HasPrefix(bad, "-") && !strings.Contains(ps[0].Message, "negative") {
			t.Errorf("hsts_max_age %s: message %q does not say it is negative", bad, ps[0].Message)
		}
	}
}
