package broker

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/storage/redis/redistest"
)

// TestStartChecksDurability: Start reads Redis's persistence, logs what an
// outage would cost (INFO for AOF, WARN otherwise, attribute durability),
// refuses to start below storage.redis.require_durability, and the admin
// status shows it.
func TestStartChecksDurability(t *testing.T) {
	for _, tc := range []struct {
		name, require string
		args          []string
		mode, level   string
		wantErr       bool
	}{
		{"aof required, none", "aof", []string{"--save", "", "--appendonly", "no"}, "none", "WARN", true},
		{"aof required, rdb", "aof", []string{"--save", "3600 1", "--appendonly", "no"}, "rdb", "WARN", true},
		{"rdb required, rdb", "rdb", []string{"--save", "3600 1", "--appendonly", "no"}, "rdb", "WARN", false},
		{"aof required, aof", "aof", []string{"--appendonly", "yes"}, "aof", "INFO", false},
		{"nothing required, none", "", []string{"--save", "", "--appendonly", "no"}, "none", "WARN", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := redistest.StartServer(t, tc.args...)
			yml := fmt.Sprintf("issuer: http://127.0.0.1:5556\nstorage: {type: redis, redis: {url: %q, require_durability: %q}}\n", srv.URL(), tc.require)
			if tc.require == "" {
				yml = fmt.Sprintf("issuer: http://127.0.0.1:5556\nstorage: {type: redis, redis: {url: %q}}\n", srv.URL())
			}
			cfg, err := config.Parse([]byte(yml), func(string) string { return "" })
			if err != nil {
				t.Fatalf("config.Parse: %v", err)
			}
			var logs bytes.Buffer
			inst, err := Start(context.Background(), cfg, newJSONLogger(&logs))
			line := durabilityLine(t, logs.String())
			if line["durability"] != tc.mode || line["level"] != tc.level || !strings.Contains(fmt.Sprint(line["msg"]), "Redis") {
				t.Errorf("durability log line = %v, want durability %q at %s", line, tc.mode, tc.level)
			}
			if tc.wantErr {
				if err == nil {
					inst.Close()
					t.Fatalf("Start succeeded on a Redis with persistence %s, want refusal", tc.mode)
				}
				for _, want := range []string{"storage.redis.require_durability", tc.require, "persistence is " + tc.mode, "aof_enabled:0"} {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q does not contain %q", err, want)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("Start: %v", err)
			}
			defer inst.Close()
			h := inst.Server.AdminHandler(AdminOptions{Token: adminToken})
			req := httptest.NewRequest(http.MethodGet, "/admin/status", nil)
			req.Header.Set("Authorization", "Bearer "+adminToken)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			var st struct {
				Storage struct {
					Type       string `json:"type"`
					Durability struct {
						Mode string `json:"mode"`
						Loss string `json:"loss"`
					} `json:"durability"`
				} `json:"storage"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil || rec.Code != http.StatusOK {
				t.Fatalf("GET /admin/status = %d %s (%v)", rec.Code, rec.Body, err)
			}
			if st.Storage.Type != "redis" || st.Storage.Durability.Mode != tc.mode || st.Storage.Durability.Loss != line["loss"] || st.Storage.Durability.Loss == "" {
				t.Errorf("admin status = %s, want storage.durability mode %q with the logged loss %q", rec.Body, tc.mode, line["loss"])
			}
		})
	}
}

// durabilityLine returns the one JSON log line with a durability attribute.
func durabilityLine(t *testing.T, logs string) map[string]any {
	t.Helper()
	var found map[string]any
	for _, l := range strings.Split(strings.TrimSpace(logs), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["durability"] != nil {
			if found != nil {
				t.Errorf("two durability lines:\n%s", logs)
			}
			found = m
		}
	}
	if found == nil {
		t.Fatalf("no log line with a durability attribute:\n%s", logs)
	}
	return found
}

// TestStartMemoryStatus: the memory store has no durability to report.
func TestStartMemoryStatus(t *testing.T) {
	cfg, err := config.Parse([]byte("issuer: http://127.0.0.1:5556\nstorage: {type: memory}\n"), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	inst, err := Start(context.Background(), cfg, newJSONLogger(&bytes.Buffer{}))
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Close()
	req := httptest.NewRequest(http.MethodGet, "/admin/status", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	rec := httptest.NewRecorder()
	inst.Server.AdminHandler(AdminOptions{Token: adminToken}).ServeHTTP(rec, req)
	if got := strings.TrimSpace(rec.Body.String()); got != `{"storage":{"type":"memory"}}` {
		t.Errorf("GET /admin/status = %d %s", rec.Code, got)
	}
}

// TestStartSQLiteByDefault: a configuration without storage runs on SQLite
// at storage.sqlite.path (the working directory's fedbroker.db by
// default), and says so in /admin/status.
func TestStartSQLiteByDefault(t *testing.T) {
	t.Chdir(t.TempDir())
	cfg, err := config.Parse([]byte("issuer: http://127.0.0.1:5556\n"), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	inst, err := Start(context.Background(), cfg, newJSONLogger(&bytes.Buffer{}))
	if err != nil {
		t.Fatal(err)
	}
	defer inst.Close()
	if _, err := os.Stat("fedbroker.db"); err != nil {
		t.Errorf("no fedbroker.db in the working directory: %v", err)
	}
	req := httptest.NewRequest(http.MethodGet, "/admin/status", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	rec := httptest.NewRecorder()
	inst.Server.AdminHandler(AdminOptions{Token: adminToken}).ServeHTTP(rec, req)
	if got := rec.Body.String(); rec.Code != http.StatusOK || !strings.Contains(got, `"type":"sqlite"`) || !strings.Contains(got, `"mode":"sqlite"`) {
		t.Errorf("GET /admin/status = %d %s, want sqlite with its durability", rec.Code, got)
	}
}
