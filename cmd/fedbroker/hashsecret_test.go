package main

import (
	"context"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/fedbroker/fedbroker/connectors"
	"github.com/fedbroker/fedbroker/connectors/local"
)

// TestHashSecretPassword: --password always prints a bcrypt hash that the
// local connector accepts and signs the user in with, whatever the
// password's length (without it, 32 characters or more get the sha256$
// client-secret form, which password_hash refuses).
func TestHashSecretPassword(t *testing.T) {
	tests := []struct {
		name, stdin, password string
		login                 bool // also sign in at a local connector with it
	}{
		{"short", "hunter22\n", "hunter22", false},
		{"passphrase of 40 characters", strings.Repeat("correct-", 5) + "\r\n", strings.Repeat("correct-", 5), true},
		{"72 bytes, no newline", strings.Repeat("p", 72), strings.Repeat("p", 72), false},
		{"only the first line", "first line\nsecond line\n", "first line", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, out, errOut := run(t, tt.stdin, "hash-secret", "--password")
			if code != 0 {
				t.Fatalf("hash-secret --password = %d: %s", code, errOut)
			}
			if !strings.HasSuffix(out, "\n") || strings.Count(out, "\n") != 1 {
				t.Errorf("output %q, want exactly one line", out)
			}
			hash := strings.TrimSuffix(out, "\n")
			if cost, err := bcrypt.Cost([]byte(hash)); err != nil || cost != 12 || len(hash) != 60 {
				t.Fatalf("hash %q: cost %d, %v; want a 60-character bcrypt hash of cost 12", hash, cost, err)
			}
			if bcrypt.CompareHashAndPassword([]byte(hash), []byte(tt.password)) != nil {
				t.Errorf("hash %q does not match %q", hash, tt.password)
			}

			cfg := &local.Config{Users: []local.User{{Username: "admin", PasswordHash: hash}}}
			if probs := cfg.Validate(); len(probs) != 0 {
				t.Fatalf("the local connector refuses the hash: %v", probs)
			}
			if !tt.login {
				return
			}
			c, err := cfg.Open(context.Background(), "local", connectors.Options{})
			if err != nil {
				t.Fatal(err)
			}
			pc := c.(connectors.PasswordConnector)
			if _, ok, err := pc.Login(context.Background(), connectors.Scopes{}, "admin", tt.password); !ok || err != nil {
				t.Errorf("Login with the password = %v, %v; want ok", ok, err)
			}
			if _, ok, _ := pc.Login(context.Background(), connectors.Scopes{}, "admin", "X"+tt.password); ok {
				t.Error("Login with another password succeeded")
			}
		})
	}

	for _, tt := range []struct {
		name, stdin string
		args        []string
		want        string
	}{
		{"empty stdin", "", nil, "give the password on stdin"},
		{"empty line", "\n", nil, "the password is empty"},
		{"73 bytes", strings.Repeat("p", 73) + "\n", nil, "bcrypt reads at most 72"},
		{"with --generate", "", []string{"--generate"}, "--generate makes client secrets"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"hash-secret", "--password"}, tt.args...)
			code, out, errOut := run(t, tt.stdin, args...)
			if code != 1 || out != "" || !strings.Contains(errOut, tt.want) {
				t.Errorf("hash-secret %v with stdin %q = %d, stdout %q, stderr %q; want 1, nothing, %q", args[1:], tt.stdin, code, out, errOut, tt.want)
			}
		})
	}
}
