package broker

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fedbroker/fedbroker/broker/keys"
	"github.com/fedbroker/fedbroker/broker/storage/memory"
)

// TestUndecryptableKeysNotReady: once the shared key set is one this
// replica cannot decrypt (rewritten by a replica with another
// key-encryption key), /readyz answers 503 with the reason and the token
// endpoint 503 temporarily_unavailable, not a token signed with the key in
// memory, nor a 500.
func TestUndecryptableKeysNotReady(t *testing.T) {
	h := newHarness(t, nil, nil, nil)
	ctx := context.Background()
	other := memory.New()
	if _, err := keys.New(ctx, other, keys.Options{KEK: make([]byte, 32), MaxTokenLifetime: time.Hour}); err != nil {
		t.Fatal(err)
	}
	blob, _, _ := other.GetKeys(ctx)
	_, v, err := h.store.GetKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p := newPKCE()
	code, _ := h.login(h.newBrowser(), authParams(p), "alice", alicePassword)
	if _, err := h.store.PutKeys(ctx, blob, v); err != nil {
		t.Fatal(err)
	}
	_ = h.keys.Refresh(ctx)

	resp, err := http.Get(h.issuer + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var st map[string]string
	_ = json.Unmarshal(body, &st)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(st["status"], "signing.key_encryption_key") {
		t.Errorf("/readyz = %d %s, want 503 naming signing.key_encryption_key", resp.StatusCode, body)
	}
	if tr := h.redeem(code, p); tr.status != http.StatusServiceUnavailable || tr.Error != "temporarily_unavailable" || tr.IDToken != "" {
		t.Errorf("token = %d %q, want 503 temporarily_unavailable", tr.status, tr.Error)
	}
	// Its JWKS is not an empty key set (a verifier would drop the keys it
	// cached) but a 503 nobody caches.
	resp, err = http.Get(h.issuer + "/keys")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || strings.Contains(resp.Header.Get("Cache-Control"), "max-age") || strings.Contains(string(body), `"keys"`) {
		t.Errorf("/keys = %d %q %s, want an uncached 503", resp.StatusCode, resp.Header.Get("Cache-Control"), body)
	}
}
