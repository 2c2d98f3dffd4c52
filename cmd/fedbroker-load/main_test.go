package main

import (
	"io"
	"strings"
	"testing"
	"time"
)

func TestParseFlags(t *testing.T) {
	cc := []string{"-client-id", "svc", "-client-secret", "s"}
	tests := []struct {
		name    string
		args    []string
		wantErr string // substring; empty: no error
		targets int
	}{
		{"defaults", cc, "", 1},
		{"three replicas", append([]string{"-target", "http://127.0.0.1:1,http://[::1]:2,http://localhost:3"}, cc...), "", 3},
		{"public host", append([]string{"-target", "http://192.0.2.7:5556"}, cc...), "non-loopback", 0},
		{"one bad among good", append([]string{"-target", "http://127.0.0.1:1,https://sso.example.com"}, cc...), "non-loopback", 0},
		{"loopback-looking name", append([]string{"-target", "http://127.0.0.1.nip.io"}, cc...), "non-loopback", 0},
		{"not http", append([]string{"-target", "redis://127.0.0.1:6379"}, cc...), "http(s) URL", 0},
		{"credentials in URL", append([]string{"-target", "http://u:p@127.0.0.1:1"}, cc...), "without credentials", 0},
		{"too many workers", append([]string{"-concurrency", "100000"}, cc...), "-concurrency", 0},
		{"unbounded duration", append([]string{"-duration", "1h"}, cc...), "-duration", 0},
		{"negative requests", append([]string{"-requests", "-1"}, cc...), "-requests", 0},
		{"unknown flow", append([]string{"-flow", "implicit"}, cc...), "-flow", 0},
		{"cc without secret", []string{"-client-id", "svc"}, "-client-secret", 0},
		{"login without user", []string{"-flow", "login", "-public-client", "app", "-redirect-uri", "http://127.0.0.1/cb", "-password", "x"}, "-user", 0},
		{"exchange on a public workload addr", append([]string{"-flow", "exchange", "-workload-addr", "0.0.0.0:5599"}, cc...), "-workload-addr", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("FEDBROKER_LOAD_CLIENT_SECRET", "")
			t.Setenv("FEDBROKER_LOAD_PASSWORD", "")
			o, err := parseFlags(tt.args, io.Discard)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseFlags(%q) error = %v, want one containing %q", tt.args, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseFlags(%q) = %v", tt.args, err)
			}
			if len(o.targets) != tt.targets {
				t.Errorf("parseFlags(%q) targets = %v, want %d", tt.args, o.targets, tt.targets)
			}
		})
	}
}

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	for _, tt := range []struct {
		p    float64
		want time.Duration
	}{{0.5, 50 * time.Millisecond}, {0.95, 95 * time.Millisecond}, {0.99, 99 * time.Millisecond}, {1, 100 * time.Millisecond}} {
		if got := percentile(d, tt.p); got != tt.want {
			t.Errorf("percentile(1..100ms, %v) = %s, want %s", tt.p, got, tt.want)
		}
	}
	if got := percentile(nil, 0.5); got != 0 {
		t.Errorf("percentile(nil) = %s, want 0", got)
	}
}
