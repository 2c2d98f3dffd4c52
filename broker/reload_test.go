package broker

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/fedbroker/fedbroker/broker/config"
)

// harnessConfig parses the harness's configuration for issuer again, as a
// reload would read it from the file, and applies mutate.
func harnessConfig(t *testing.T, issuer string, edit func(string) string, mutate func(*config.Config)) *config.Config {
	t.Helper()
	hashes, secretHash := hashOnce()
	yml := fmt.Sprintf(testConfigYAML, issuer, hashes[0], hashes[1], hashes[2], appRedirect, appLogout, secretHash, svcRedirect)
	if edit != nil {
		yml = edit(yml)
	}
	cfg, err := config.Parse([]byte(yml), func(string) string { return "" })
	if err != nil {
		t.Fatalf("config.Parse: %v", err)
	}
	if mutate != nil {
		mutate(cfg)
	}
	return cfg
}

// authorizeAs runs /authorize for a public client and returns the status.
func authorizeAs(h *harness, clientID, redirect string) int {
	h.t.Helper()
	params := authParams(newPKCE())
	params.Set("client_id", clientID)
	params.Set("redirect_uri", redirect)
	return h.authorize(h.newBrowser(), params).status
}

const newClientRedirect = "http://127.0.0.1:7777/cb"

// swapClients removes client "other" and adds client "new" in its place.
func swapClients(yml string) string {
	old := "  - id: other\n    name: Other App\n    public: true\n    redirect_uris: [\"http://127.0.0.1:8888/cb\"]\n"
	if !strings.Contains(yml, old) {
		panic("harness configuration changed: no client other")
	}
	return strings.Replace(yml, old, "  - id: new\n    name: New App\n    public: true\n    redirect_uris: [\""+newClientRedirect+"\"]\n", 1)
}

func TestReloadApplies(t *testing.T) {
	h := newHarness(t, nil, nil, nil)
	if got := authorizeAs(h, "other", "http://127.0.0.1:8888/cb"); got != http.StatusFound {
		t.Fatalf("authorize other before reload = %d, want 302", got)
	}
	if got := authorizeAs(h, "new", newClientRedirect); got != http.StatusBadRequest {
		t.Fatalf("authorize new before reload = %d, want 400", got)
	}
	if err := h.b.Reload(context.Background(), harnessConfig(t, h.issuer, swapClients, nil)); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if got := authorizeAs(h, "new", newClientRedirect); got != http.StatusFound {
		t.Errorf("authorize new after reload = %d, want 302", got)
	}
	if got := authorizeAs(h, "other", "http://127.0.0.1:8888/cb"); got != http.StatusBadRequest {
		t.Errorf("authorize removed client after reload = %d, want 400", got)
	}
	// A full login still works on the new configuration.
	p := newPKCE()
	code, _ := h.login(h.newBrowser(), authParams(p), "alice", alicePassword)
	if tr := h.redeem(code, p); tr.status != http.StatusOK {
		t.Errorf("redeem after reload = %d %s", tr.status, tr.Error)
	}
}

func TestReloadRefusesInvalid(t *testing.T) {
	h := newHarness(t, nil, nil, nil)
	tests := []struct {
		name     string
		mutate   func(*testing.T, *config.Config)
		wantPath string
	}{
		{"undefined mapping", func(_ *testing.T, cfg *config.Config) {
			cfg.Connectors[0].Mapping = "missing"
		}, "connectors[0].mapping"},
		{"mapping does not compile", func(t *testing.T, cfg *config.Config) {
			cfg.Mappings["broken"] = mappingSpecYAML(t, "claims:\n  email: 'claims.email +'\n")
			cfg.Connectors[1].Mapping = "broken"
		}, "mappings.broken"},
		{"bad local user", func(t *testing.T, cfg *config.Config) {
			if err := cfg.Connectors[0].Config.Encode(map[string]any{"users": []map[string]string{{"username": "x", "password_hash": "not-bcrypt"}}}); err != nil {
				t.Fatal(err)
			}
		}, "connectors"},
		{"issuer changed", func(_ *testing.T, cfg *config.Config) {
			cfg.Issuer = "https://elsewhere.example.com"
		}, "issuer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := h.b.Reload(context.Background(), harnessConfig(t, h.issuer, swapClients, func(cfg *config.Config) { tt.mutate(t, cfg) }))
			var problems config.Errors
			if !errors.As(err, &problems) || len(problems) == 0 {
				t.Fatalf("Reload = %v, want config.Errors", err)
			}
			if !strings.Contains(err.Error(), tt.wantPath) {
				t.Errorf("Reload problems %q do not name %s", err, tt.wantPath)
			}
			// The old configuration keeps serving.
			if got := authorizeAs(h, "other", "http://127.0.0.1:8888/cb"); got != http.StatusFound {
				t.Errorf("authorize other after refused reload = %d, want 302", got)
			}
			if got := authorizeAs(h, "new", newClientRedirect); got != http.StatusBadRequest {
				t.Errorf("authorize new after refused reload = %d, want 400", got)
			}
			br := h.newBrowser()
			p := newPKCE()
			params := authParams(p)
			params.Set("connector_id", "backup")
			r := h.authorize(br, params)
			done := h.passwordLogin(br, r.location, "carol", "carol-password-123")
			if done.status != http.StatusSeeOther || done.location == nil {
				t.Fatalf("login at backup after refused reload = %d", done.status)
			}
			if tr := h.redeem(done.location.Query().Get("code"), p); tr.status != http.StatusOK {
				t.Errorf("redeem after refused reload = %d %s", tr.status, tr.Error)
			}
		})
	}
}

// TestReloadLoginInFlight: a login started before a reload (authorize and
// login page) completes after it (password POST, code, token).
func TestReloadLoginInFlight(t *testing.T) {
	h := newHarness(t, nil, nil, nil)
	br := h.newBrowser()
	p := newPKCE()
	params := authParams(p)
	params.Set("connector_id", "local")
	r := h.authorize(br, params)
	if r.status != http.StatusFound || r.location == nil {
		t.Fatalf("authorize = %d", r.status)
	}
	page := br.get(r.location.String())
	req, csrf := reqField.FindStringSubmatch(page.body), csrfField.FindStringSubmatch(page.body)
	if req == nil || csrf == nil {
		t.Fatalf("login page has no req/csrf: %d %s", page.status, page.body)
	}
	if err := h.b.Reload(context.Background(), harnessConfig(t, h.issuer, swapClients, nil)); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	action := *r.location
	action.RawQuery = ""
	done := br.postForm(action.String(), url.Values{"req": {req[1]}, "csrf": {csrf[1]}, "login": {"alice"}, "password": {alicePassword}})
	if done.status != http.StatusSeeOther || done.location == nil || done.location.Query().Get("code") == "" {
		t.Fatalf("password POST after reload = %d %v, want 303 with a code; body %s", done.status, done.location, done.body)
	}
	tr := h.redeem(done.location.Query().Get("code"), p)
	if tr.status != http.StatusOK || tr.IDToken == "" {
		t.Fatalf("redeem after reload = %d %s", tr.status, tr.Error)
	}
	if _, err := h.verifier("app").Verify(context.Background(), tr.IDToken); err != nil {
		t.Errorf("id_token after reload: %v", err)
	}
}

// TestReloadRemovesWhatALoginUses: a login in flight whose client or
// connector a reload removed is refused (400, no code), never a 500 and
// never a code for a client that no longer exists.
func TestReloadRemovesWhatALoginUses(t *testing.T) {
	dropBackup := func(yml string) string {
		i, j := strings.Index(yml, "  - id: backup\n"), strings.Index(yml, "clients:\n")
		if i < 0 || j < i {
			panic("harness configuration changed: no connector backup")
		}
		return yml[:i] + yml[j:]
	}
	tests := []struct {
		name, client, redirect, connector, user, password string
		edit                                              func(string) string
	}{
		{"client removed", "other", "http://127.0.0.1:8888/cb", "local", "alice", alicePassword, swapClients},
		{"connector removed", "app", appRedirect, "backup", "carol", "carol-password-123", dropBackup},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, nil, nil, nil)
			br := h.newBrowser()
			params := authParams(newPKCE())
			params.Set("client_id", tt.client)
			params.Set("redirect_uri", tt.redirect)
			params.Set("connector_id", tt.connector)
			r := h.authorize(br, params)
			if r.status != http.StatusFound || r.location == nil {
				t.Fatalf("authorize = %d", r.status)
			}
			page := br.get(r.location.String())
			req, csrf := reqField.FindStringSubmatch(page.body), csrfField.FindStringSubmatch(page.body)
			if req == nil || csrf == nil {
				t.Fatalf("login page has no req/csrf: %d", page.status)
			}
			if err := h.b.Reload(context.Background(), harnessConfig(t, h.issuer, tt.edit, nil)); err != nil {
				t.Fatalf("Reload: %v", err)
			}
			action := *r.location
			action.RawQuery = ""
			done := br.postForm(action.String(), url.Values{"req": {req[1]}, "csrf": {csrf[1]}, "login": {tt.user}, "password": {tt.password}})
			if done.status != http.StatusBadRequest || done.location != nil {
				t.Errorf("password POST after the reload = %d %v, want 400 and no redirect", done.status, done.location)
			}
			if strings.Contains(h.audit.String(), `"msg":"login",`) {
				t.Error("a login was audited as successful")
			}
		})
	}
}
