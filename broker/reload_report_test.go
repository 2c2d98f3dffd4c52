package broker

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/fedbroker/fedbroker/broker/config"
)

// addAppRedirect gives client app a second redirect URI.
const appRedirect2 = "http://127.0.0.1:9999/cb2"

func addAppRedirect(yml string) string {
	old := "    redirect_uris: [" + appRedirect + "]\n"
	if !strings.Contains(yml, old) {
		panic("harness configuration changed: no redirect_uris for app")
	}
	return strings.Replace(yml, old, "    redirect_uris: ["+appRedirect+", \""+appRedirect2+"\"]\n", 1)
}

func changePaths(cs []config.Change) []string {
	out := []string{}
	for _, c := range cs {
		out = append(out, c.Path)
	}
	return out
}

// idTokenAlg signs alice in and returns the alg of her ID token's header.
func idTokenAlg(t *testing.T, h *harness) string {
	t.Helper()
	p := newPKCE()
	code, _ := h.login(h.newBrowser(), authParams(p), "alice", alicePassword)
	tr := h.redeem(code, p)
	if tr.status != http.StatusOK || tr.IDToken == "" {
		t.Fatalf("redeem = %d %s", tr.status, tr.Error)
	}
	head, err := base64.RawURLEncoding.DecodeString(strings.Split(tr.IDToken, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	var hdr struct{ Alg string }
	if err := json.Unmarshal(head, &hdr); err != nil {
		t.Fatal(err)
	}
	return hdr.Alg
}

func TestReloadReportsNoChanges(t *testing.T) {
	h := newHarness(t, nil, nil, nil)
	rep, err := h.b.ReloadWithReport(context.Background(), harnessConfig(t, h.issuer, nil, nil))
	if err != nil {
		t.Fatalf("ReloadWithReport: %v", err)
	}
	if len(rep.Applied) != 0 || len(rep.RestartRequired) != 0 || rep.Status() != "no changes" {
		t.Errorf("report = %+v (%s), want no changes", rep, rep.Status())
	}
}

func TestReloadReportsAppliedClientChange(t *testing.T) {
	h := newHarness(t, nil, nil, nil)
	if got := authorizeAs(h, "app", appRedirect2); got != http.StatusBadRequest {
		t.Fatalf("authorize with the second redirect before reload = %d, want 400", got)
	}
	rep, err := h.b.ReloadWithReport(context.Background(), harnessConfig(t, h.issuer, addAppRedirect, nil))
	if err != nil {
		t.Fatalf("ReloadWithReport: %v", err)
	}
	if got := changePaths(rep.Applied); !slices.Equal(got, []string{"clients[app].redirect_uris"}) || len(rep.RestartRequired) != 0 {
		t.Errorf("report = %+v, want clients[app].redirect_uris applied and no restart", rep)
	}
	if rep.Status() != "reloaded" {
		t.Errorf("status = %q, want reloaded", rep.Status())
	}
	if got := authorizeAs(h, "app", appRedirect2); got != http.StatusFound {
		t.Errorf("authorize with the second redirect after reload = %d, want 302", got)
	}
	// The server now runs the new configuration: reloading it again
	// changes nothing.
	rep, err = h.b.ReloadWithReport(context.Background(), harnessConfig(t, h.issuer, addAppRedirect, nil))
	if err != nil || len(rep.Applied)+len(rep.RestartRequired) != 0 {
		t.Errorf("second reload = %+v, %v; want no changes", rep, err)
	}
}

// TestReloadReportsRestartRequired: a change the running server cannot
// take is reported with its path, the old value keeps running, and the
// rest of the file is applied. Until a restart, every reload reports it
// again.
func TestReloadReportsRestartRequired(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*config.Config)
		want   []string
		check  func(t *testing.T, h *harness)
	}{
		{"signing.algorithm", func(c *config.Config) { c.Signing.Algorithm = "RS256" }, []string{"signing.algorithm"},
			func(t *testing.T, h *harness) {
				if alg := idTokenAlg(t, h); alg != "ES256" {
					t.Errorf("ID token alg after reload = %s, want ES256 (the running keys)", alg)
				}
			}},
		{"storage", func(c *config.Config) {
			c.Storage.Type = "redis"
			c.Storage.Redis.URL = "redis://:hunter2-redis-password@redis.example.com:6379/0"
		}, []string{"storage.type", "storage.redis.url"},
			func(t *testing.T, h *harness) {
				if h.b.store != h.store {
					t.Error("the server's storage changed")
				}
				if alg := idTokenAlg(t, h); alg != "ES256" {
					t.Errorf("sign-in after reload: alg %s", alg)
				}
			}},
		{"http.addr", func(c *config.Config) { c.HTTP.Addr = "0.0.0.0:443" }, []string{"http.addr"}, nil},
		{"admin.token", func(c *config.Config) { c.Admin.Token = "rotated-admin-token-0123456789abcdef" }, []string{"admin.token"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, nil, nil, nil)
			next := func() *config.Config { return harnessConfig(t, h.issuer, addAppRedirect, tt.mutate) }
			rep, err := h.b.ReloadWithReport(context.Background(), next())
			if err != nil {
				t.Fatalf("ReloadWithReport: %v", err)
			}
			if got := changePaths(rep.RestartRequired); !slices.Equal(got, tt.want) {
				t.Errorf("restart required = %q, want %q", got, tt.want)
			}
			if got := changePaths(rep.Applied); !slices.Equal(got, []string{"clients[app].redirect_uris"}) {
				t.Errorf("applied = %q, want the client change", got)
			}
			if rep.Status() != "restart required" {
				t.Errorf("status = %q, want restart required", rep.Status())
			}
			out, _ := json.Marshal(rep)
			for _, secret := range []string{"hunter2", "rotated-admin-token"} {
				if strings.Contains(string(out), secret) {
					t.Errorf("report %s contains a secret", out)
				}
			}
			// The reloadable part is applied.
			if got := authorizeAs(h, "app", appRedirect2); got != http.StatusFound {
				t.Errorf("authorize with the new redirect = %d, want 302", got)
			}
			if tt.check != nil {
				tt.check(t, h)
			}
			// Still not running: the same file reports it again, and
			// nothing else.
			rep, err = h.b.ReloadWithReport(context.Background(), next())
			if err != nil {
				t.Fatalf("second ReloadWithReport: %v", err)
			}
			if got := changePaths(rep.RestartRequired); !slices.Equal(got, tt.want) || len(rep.Applied) != 0 {
				t.Errorf("second reload = %+v, want only %q needing a restart", rep, tt.want)
			}
		})
	}
}

// TestReloadIssuerStillRefused: a changed issuer refuses the whole reload.
func TestReloadIssuerStillRefused(t *testing.T) {
	h := newHarness(t, nil, nil, nil)
	_, err := h.b.ReloadWithReport(context.Background(), harnessConfig(t, h.issuer, addAppRedirect, func(c *config.Config) {
		c.Issuer = "https://elsewhere.example.com"
	}))
	if err == nil || !strings.Contains(err.Error(), "issuer") {
		t.Fatalf("ReloadWithReport = %v, want the issuer refused", err)
	}
	if got := authorizeAs(h, "app", appRedirect2); got != http.StatusBadRequest {
		t.Errorf("authorize with the new redirect after a refused reload = %d, want 400", got)
	}
	// A trailing slash is the same issuer.
	rep, err := h.b.ReloadWithReport(context.Background(), harnessConfig(t, h.issuer, nil, func(c *config.Config) { c.Issuer += "/" }))
	if err != nil || rep.Status() != "no changes" {
		t.Errorf("reload with a trailing slash on the issuer = %+v, %v; want no changes", rep, err)
	}
}
