package broker

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/storage/redis/redistest"
)

// TestStartWarnsOnlyWhenKeysPersist: without a key-encryption key, the
// warning that signing keys are stored in clear is for storage that
// outlives the process (SQLite, Redis), not for the memory store.
func TestStartWarnsOnlyWhenKeysPersist(t *testing.T) {
	const warning = "stored UNENCRYPTED"
	for _, tc := range []struct {
		name, storage string
		warn          bool
	}{
		{"memory", "storage: {type: memory}", false},
		{"sqlite", fmt.Sprintf("storage: {type: sqlite, sqlite: {path: %q}}", filepath.Join(t.TempDir(), "f.db")), true},
		{"redis", fmt.Sprintf("storage: {type: redis, redis: {url: %q}}", redistest.Start(t)), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			yml := "issuer: http://127.0.0.1:5556\n" + tc.storage + "\n"
			cfg, err := config.Parse([]byte(yml), func(string) string { return "" })
			if err != nil {
				t.Fatalf("config.Parse: %v", err)
			}
			var logs bytes.Buffer
			inst, err := Start(context.Background(), cfg, newJSONLogger(&logs))
			if err != nil {
				t.Fatalf("Start: %v", err)
			}
			inst.Close()
			if got := strings.Contains(logs.String(), warning); got != tc.warn {
				t.Errorf("warning %q logged = %v, want %v; logs:\n%s", warning, got, tc.warn, logs.String())
			}
		})
	}
}
