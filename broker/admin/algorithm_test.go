package admin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"

	"github.com/fedbroker/fedbroker/broker/admin"
	"github.com/fedbroker/fedbroker/broker/keys"
	"github.com/fedbroker/fedbroker/broker/observe"
	"github.com/fedbroker/fedbroker/broker/storage/memory"
)

type algorithmBody struct {
	Status      string `json:"status"`
	Algorithm   string `json:"algorithm"`
	Previous    string `json:"previous"`
	Version     *int64 `json:"version"`
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

func postAlgorithm(t *testing.T, h http.Handler, token, body string) (int, algorithmBody, string) {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/admin/keys/algorithm", strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var b algorithmBody
	if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil {
		t.Fatalf("body %q is not JSON: %v", rec.Body, err)
	}
	return rec.Code, b, rec.Body.String()
}

// auditOutcomes returns the outcome of each admin_keys_algorithm line.
func auditOutcomes(t *testing.T, audit *bytes.Buffer) []string {
	t.Helper()
	var out []string
	for l := range strings.SplitSeq(strings.TrimSpace(audit.String()), "\n") {
		var ev map[string]any
		_ = json.Unmarshal([]byte(l), &ev)
		if ev["msg"] == "admin_keys_algorithm" {
			o, _ := ev["outcome"].(string)
			a, _ := ev["algorithm"].(string)
			out = append(out, o+":"+a)
		}
	}
	return out
}

// TestSetAlgorithmAdmin: POST /admin/keys/algorithm changes the fleet's
// default signing algorithm when the shared set has keys for it, answers
// unchanged when it already is the default, 409 unknown_algorithm when the
// set has no key for it, 400 invalid_request for a bad body or an
// algorithm not supported at all; the audit log records what happened.
func TestSetAlgorithmAdmin(t *testing.T) {
	ctx := context.Background()
	now := func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }
	store := memory.New(memory.WithClock(now))
	newKeys := func(alg string, algs ...string) *keys.Manager {
		km, err := keys.New(ctx, store, keys.Options{Algorithm: alg, Algorithms: algs, Now: now, KEK: make([]byte, 32), MaxTokenLifetime: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		return km
	}
	ka := newKeys("ES256", "RS256")
	kb := newKeys("RS256", "ES256")
	if kb.Ready() {
		t.Fatal("a replica with another default is ready")
	}
	var audit bytes.Buffer
	h := admin.Handler(admin.Deps{Store: store, Keys: ka, Audit: observe.NewAudit(slog.New(slog.NewJSONHandler(&audit, nil)))},
		admin.Options{Token: testToken})

	for _, tc := range []struct {
		name, body string
		code       int
		errCode    string
		says       string
	}{
		{"not JSON", `{algorithm`, http.StatusBadRequest, "invalid_request", `{"algorithm": "RS256"}`},
		{"empty body", ``, http.StatusBadRequest, "invalid_request", `{"algorithm": "RS256"}`},
		{"no algorithm", `{}`, http.StatusBadRequest, "invalid_request", "ES256, RS256, EdDSA"},
		{"wrong type", `{"algorithm": 256}`, http.StatusBadRequest, "invalid_request", `{"algorithm": "RS256"}`},
		{"unknown field", `{"algorithm": "RS256", "force": true}`, http.StatusBadRequest, "invalid_request", "force"},
		{"two objects", `{"algorithm": "RS256"} {"algorithm": "ES256"}`, http.StatusBadRequest, "invalid_request", "one JSON object"},
		{"HMAC", `{"algorithm": "HS256"}`, http.StatusBadRequest, "invalid_request", "HS256"},
		{"none", `{"algorithm": "none"}`, http.StatusBadRequest, "invalid_request", "none"},
		{"lower case", `{"algorithm": "rs256"}`, http.StatusBadRequest, "invalid_request", "rs256"},
		{"no key in the set", `{"algorithm": "EdDSA"}`, http.StatusConflict, "unknown_algorithm", "signing.algorithms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, b, raw := postAlgorithm(t, h, testToken, tc.body)
			if code != tc.code || b.Error != tc.errCode || !strings.Contains(b.Description, tc.says) {
				t.Errorf("POST %q = %d %s, want %d %s with a description naming %q", tc.body, code, raw, tc.code, tc.errCode, tc.says)
			}
		})
	}
	if !ka.Ready() {
		t.Fatalf("refused changes made the replica not ready: %v", ka.Readiness())
	}

	code, b, raw := postAlgorithm(t, h, testToken, `{"algorithm": "ES256"}`)
	if code != http.StatusOK || b.Status != "unchanged" || b.Algorithm != "ES256" || b.Version == nil {
		t.Errorf("POST ES256 (already the default) = %d %s, want 200 unchanged with a version", code, raw)
	}
	code, b, raw = postAlgorithm(t, h, testToken, `{"algorithm": "RS256"}`)
	if code != http.StatusOK || b.Status != "changed" || b.Algorithm != "RS256" || b.Previous != "ES256" || b.Version == nil {
		t.Errorf("POST RS256 = %d %s, want 200 changed from ES256 with a version", code, raw)
	}
	if ka.Ready() {
		t.Error("the replica still signing ES256 stays ready after the fleet moved to RS256")
	}
	if err := kb.Refresh(ctx); err != nil || !kb.Ready() {
		t.Errorf("the RS256 replica after the change: Refresh %v, Readiness %v; want ready", err, kb.Readiness())
	}
	// Asked again on the refusing replica: unchanged, and it still works
	// there (the answer does not depend on which replica is asked).
	code, b, raw = postAlgorithm(t, h, testToken, `{"algorithm": "RS256"}`)
	if code != http.StatusOK || b.Status != "unchanged" {
		t.Errorf("POST RS256 again = %d %s, want 200 unchanged", code, raw)
	}
	if got, want := strings.Join(auditOutcomes(t, &audit), ","), "refused:EdDSA,unchanged:ES256,changed:RS256,unchanged:RS256"; got != want {
		t.Errorf("audit = %s, want %s:\n%s", got, want, audit.String())
	}

	// Unauthenticated: nothing happens.
	code, _, _ = postAlgorithm(t, h, "", `{"algorithm": "ES256"}`)
	if code != http.StatusUnauthorized {
		t.Errorf("POST without a token = %d, want 401", code)
	}
}

// TestSetAlgorithmAdminStaticKeys: with static keys there is no shared set
// to change: 409 with a clear description.
func TestSetAlgorithmAdminStaticKeys(t *testing.T) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	km, err := keys.New(context.Background(), nil, keys.Options{StaticKeys: []keys.StaticKey{{File: file}}})
	if err != nil {
		t.Fatal(err)
	}
	h := admin.Handler(admin.Deps{Keys: km, Audit: observe.NewAudit(slog.New(slog.DiscardHandler))}, admin.Options{Token: testToken})
	code, b, raw := postAlgorithm(t, h, testToken, `{"algorithm": "ES256"}`)
	if code != http.StatusConflict || !strings.Contains(b.Description, "static") {
		t.Errorf("POST with static keys = %d %s, want 409 naming static keys", code, raw)
	}
}
