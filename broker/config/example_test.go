package config

import (
	"path/filepath"
	"runtime"
	"testing"

	"github.com/fedbroker/fedbroker/connectors"
	"github.com/fedbroker/fedbroker/connectors/local"
	"github.com/fedbroker/fedbroker/connectors/registry"
)

// TestExampleLocal loads deploy/examples/local.yaml and signs in with the
// passwords and secret its comments document.
func TestExampleLocal(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	path := filepath.Join(filepath.Dir(file), "..", "..", "deploy", "examples", "local.yaml")
	cfg, err := Load(path)
	if err != nil {
		t.Fatalf("Load(%s): %v", path, err)
	}
	if cfg.Issuer != "http://127.0.0.1:5556" || cfg.Storage.Type != "memory" {
		t.Errorf("issuer, storage = %q, %q", cfg.Issuer, cfg.Storage.Type)
	}
	if len(cfg.Connectors) != 1 {
		t.Fatalf("connectors = %d, want 1", len(cfg.Connectors))
	}
	typed, ps := cfg.Connectors[0].Decode(registry.Types())
	if len(ps) > 0 {
		t.Fatalf("Decode: %v", ps)
	}
	impl, err := typed.Open(t.Context(), "local", connectors.Options{})
	if err != nil {
		t.Fatal(err)
	}
	conn := impl.(*local.Connector)
	for user, pass := range map[string]string{"admin": "break-glass-admin-2024", "oncall": "oncall-operator-2024"} {
		if _, ok, err := conn.Login(t.Context(), connectors.Scopes{}, user, pass); !ok || err != nil {
			t.Errorf("Login(%s, documented password) = %v, %v; want ok", user, ok, err)
		}
	}
	byID := map[string]Client{}
	for _, c := range cfg.Clients {
		byID[c.ID] = c
	}
	app, svc := byID["example-app"], byID["example-service"]
	if !app.Public || len(app.RedirectURIs) != 1 || app.RedirectURIs[0] != "http://127.0.0.1:5555/callback" {
		t.Errorf("example-app = %+v", app)
	}
	if !VerifySecret(svc.SecretHash, "HlQCMhgErczclZR68p_en5ayXsJESDYj-GaWRnCgk1Q") {
		t.Errorf("example-service: documented secret does not verify against %q", svc.SecretHash)
	}
}
