package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestDrainPeriod: http.drain_period is a Go duration; unset means 5s, 0s
// turns the drain off, and a negative value is refused at its YAML path.
func TestDrainPeriod(t *testing.T) {
	const iss = "issuer: https://sso.example.com\n"
	for _, tc := range []struct {
		yml  string
		want time.Duration
	}{
		{iss, 5 * time.Second},
		{iss + "http: {drain_period: 0s}\n", 0},
		{iss + "http: {drain_period: 2s}\n", 2 * time.Second},
		{iss + "http: {drain_period: 1m30s}\n", 90 * time.Second},
		{iss + "http: {drain_period: 250ms}\n", 250 * time.Millisecond},
	} {
		cfg, err := Parse([]byte(tc.yml), noEnv)
		if err != nil {
			t.Fatalf("Parse(%q): %v", tc.yml, err)
		}
		if got := cfg.HTTP.Drain(); got != tc.want {
			t.Errorf("Parse(%q).HTTP.Drain() = %v, want %v", tc.yml, got, tc.want)
		}
	}
	if got := (HTTP{}).Drain(); got != DefaultDrainPeriod || DefaultDrainPeriod != 5*time.Second {
		t.Errorf("HTTP{}.Drain() = %v, DefaultDrainPeriod = %v, want 5s", got, DefaultDrainPeriod)
	}
	for _, bad := range []string{"-1s", "-1ns", "5", "soon"} {
		_, err := Parse([]byte(iss+"http: {drain_period: "+bad+"}\n"), noEnv)
		var ps Errors
		if !errors.As(err, &ps) || len(ps) != 1 || ps[0].Path != "http.drain_period" {
			t.Errorf("drain_period %s: err = %v, want one problem at http.drain_period", bad, err)
			continue
		}
		if strings.HasPrefix(bad, "-") && !strings.Contains(ps[0].Message, "negative") {
			t.Errorf("drain_period %s: message %q does not say it is negative", bad, ps[0].Message)
		}
	}
}
