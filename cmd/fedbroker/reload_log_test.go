package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/fedbroker/fedbroker/broker"
	"github.com/fedbroker/fedbroker/broker/config"
)

// reloadLogLine reloads the file at path into in and returns the one log
// line the reload writes (the broker's own lines are left out).
func reloadLogLine(t *testing.T, path string, in *broker.Instance) (map[string]any, error) {
	t.Helper()
	var buf bytes.Buffer
	_, err := reload(context.Background(), path, in, slog.New(slog.NewJSONHandler(&buf, nil)))
	var line map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(l), &rec) == nil && strings.HasPrefix(rec["msg"].(string), "reload") {
			if line != nil {
				t.Errorf("more than one reload line: %s", buf.String())
			}
			line = rec
		}
	}
	if line == nil {
		t.Fatalf("no reload line in %s", buf.String())
	}
	return line, err
}

func logPaths(t *testing.T, line map[string]any, key string) []string {
	t.Helper()
	list, _ := line[key].([]any)
	var out []string
	for _, c := range list {
		m, _ := c.(map[string]any)
		out = append(out, m["path"].(string)+" "+m["change"].(string))
	}
	return out
}

// TestReloadLogLine: the SIGHUP reload logs one JSON line listing each
// changed field as applied or needing a restart, "no changes" when
// nothing changed, and never a secret value.
func TestReloadLogLine(t *testing.T) {
	dir := t.TempDir()
	path := writeFile(t, dir, "config.yaml", goodConfig)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	in, err := broker.Start(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(in.Close)

	line, err := reloadLogLine(t, path, in)
	if err != nil || line["msg"] != "reload: no changes" || line["level"] != "INFO" {
		t.Errorf("unchanged reload logged %v (%v), want reload: no changes", line, err)
	}

	writeFile(t, dir, "config.yaml", strings.Replace(goodConfig, `["http://127.0.0.1:5555/callback"]`, `["http://127.0.0.1:5555/cb2"]`, 1))
	line, err = reloadLogLine(t, path, in)
	if err != nil || line["msg"] != "reload applied" || strings.Join(logPaths(t, line, "applied"), ",") != "clients[app].redirect_uris changed" {
		t.Errorf("client change logged %v (%v), want reload applied with clients[app].redirect_uris", line, err)
	}
	if line["restart_required"] != nil && len(line["restart_required"].([]any)) != 0 {
		t.Errorf("client change logged restart_required %v", line["restart_required"])
	}

	const kek = "bmV3LWtleS1lbmNyeXB0aW9uLWtleS0zMi1ieXRlcyE="
	writeFile(t, dir, "config.yaml", goodConfig+"http:\n  addr: 127.0.0.1:6001\nsigning:\n  key_encryption_key: "+kek+"\n")
	line, err = reloadLogLine(t, path, in)
	if err != nil || line["msg"] != "reload applied; some changes need a restart" || line["level"] != "WARN" {
		t.Errorf("restart change logged %v (%v), want a warning", line, err)
	}
	got := strings.Join(logPaths(t, line, "restart_required"), ",")
	if got != "http.addr changed,signing.key_encryption_key changed" {
		t.Errorf("restart_required = %s; want http.addr and signing.key_encryption_key", got)
	}
	if b, _ := json.Marshal(line); strings.Contains(string(b), kek) || strings.Contains(string(b), "6001") {
		t.Errorf("log line %s contains a value", b)
	}

	writeFile(t, dir, "config.yaml", "issuer: [\n")
	line, err = reloadLogLine(t, path, in)
	if err == nil || line["level"] != "ERROR" {
		t.Errorf("broken file logged %v (%v), want an error", line, err)
	}
}
