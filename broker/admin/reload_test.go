package admin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/fedbroker/fedbroker/broker/admin"
	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/observe"
)

const testToken = "admin-token-0123456789abcdef0123456789"

type reloadBody struct {
	Status          string          `json:"status"`
	Applied         []config.Change `json:"applied"`
	RestartRequired []config.Change `json:"restart_required"`
	Error           string          `json:"error"`
	Problems        []string        `json:"problems"`
}

func postReload(t *testing.T, opts admin.Options) (int, reloadBody, string, string) {
	t.Helper()
	var audit bytes.Buffer
	opts.Token = testToken
	h := admin.Handler(admin.Deps{Audit: observe.NewAudit(slog.New(slog.NewJSONHandler(&audit, nil)))}, opts)
	req := httptest.NewRequest(http.MethodPost, "/admin/reload", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var body reloadBody
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("body %q: %v", rec.Body.String(), err)
	}
	return rec.Code, body, rec.Body.String(), audit.String()
}

func TestReloadResponse(t *testing.T) {
	applied := []config.Change{{Path: "clients[app].redirect_uris", Kind: config.ChangeChanged}, {Path: "clients[new]", Kind: config.ChangeAdded}}
	restart := []config.Change{{Path: "http.addr", Kind: config.ChangeChanged}, {Path: "signing.key_encryption_key", Kind: config.ChangeChanged}}
	tests := []struct {
		name       string
		report     config.ReloadReport
		wantStatus string
	}{
		{"no changes", config.ReloadReport{}, "no changes"},
		{"applied", config.ReloadReport{Applied: applied}, "reloaded"},
		{"restart required", config.ReloadReport{Applied: applied, RestartRequired: restart}, "restart required"},
		{"only restart required", config.ReloadReport{RestartRequired: restart}, "restart required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body, raw, audit := postReload(t, admin.Options{ReloadWithReport: func(context.Context) (config.ReloadReport, error) { return tt.report, nil }})
			if code != http.StatusOK || body.Status != tt.wantStatus {
				t.Errorf("reload = %d %s, want 200 status %q", code, raw, tt.wantStatus)
			}
			// Both lists are always present, empty or not.
			if !strings.Contains(raw, `"applied":[`) || !strings.Contains(raw, `"restart_required":[`) {
				t.Errorf("body %s lacks a list", raw)
			}
			if len(body.Applied) != len(tt.report.Applied) || len(body.RestartRequired) != len(tt.report.RestartRequired) {
				t.Errorf("body %s does not list the report %+v", raw, tt.report)
			}
			for i, c := range tt.report.RestartRequired {
				if body.RestartRequired[i] != c {
					t.Errorf("restart_required[%d] = %+v, want %+v", i, body.RestartRequired[i], c)
				}
			}
			if !strings.Contains(audit, `"msg":"admin_reload"`) || !strings.Contains(audit, `"outcome":"applied"`) {
				t.Errorf("audit %s lacks admin_reload applied", audit)
			}
			for _, c := range tt.report.RestartRequired {
				if !strings.Contains(audit, c.Path) {
					t.Errorf("audit %s does not name %s", audit, c.Path)
				}
			}
		})
	}
}

func TestReloadResponseRefused(t *testing.T) {
	code, body, raw, audit := postReload(t, admin.Options{ReloadWithReport: func(context.Context) (config.ReloadReport, error) {
		return config.ReloadReport{}, config.Errors{{Path: "issuer", Message: "cannot change while running; restart instead"}}
	}})
	if code != http.StatusUnprocessableEntity || body.Error == "" || len(body.Problems) != 1 || !strings.HasPrefix(body.Problems[0], "issuer") {
		t.Errorf("refused reload = %d %s, want 422 naming issuer", code, raw)
	}
	if !strings.Contains(audit, `"outcome":"refused"`) {
		t.Errorf("audit %s lacks the refusal", audit)
	}
}

// TestReloadWithoutReport: the older Reload option still answers
// {"status": "reloaded"}.
func TestReloadWithoutReport(t *testing.T) {
	code, body, raw, _ := postReload(t, admin.Options{Reload: func(context.Context) error { return nil }})
	if code != http.StatusOK || body.Status != "reloaded" {
		t.Errorf("reload = %d %s, want 200 reloaded", code, raw)
	}
	code, _, raw, _ = postReload(t, admin.Options{Reload: func(context.Context) error { return errors.New("a\nb") }})
	if code != http.StatusUnprocessableEntity {
		t.Errorf("refused reload = %d %s, want 422", code, raw)
	}
}
