package admin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fedbroker/fedbroker/broker/admin"
	"github.com/fedbroker/fedbroker/broker/keys"
	"github.com/fedbroker/fedbroker/broker/observe"
	"github.com/fedbroker/fedbroker/broker/storage"
	"github.com/fedbroker/fedbroker/broker/storage/memory"
	"github.com/fedbroker/fedbroker/broker/storage/redis"
	"github.com/fedbroker/fedbroker/broker/storage/redis/redistest"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type rotateBody struct {
	Status  string `json:"status"`
	Error   string `json:"error"`
	Version int64  `json:"version"`
}

// TestRotateAnswersWhatHappened: two replicas on one store asked to rotate
// two seconds apart make one rotation; the first answers 200 rotated, the
// second 409 already_rotated with the same version, and each audit line
// says what happened.
func TestRotateAnswersWhatHappened(t *testing.T) {
	for _, tc := range []struct {
		name  string
		store func(t *testing.T, clk *fakeClock) (storage.Storage, storage.Storage)
	}{
		{"memory", func(_ *testing.T, clk *fakeClock) (storage.Storage, storage.Storage) {
			s := memory.New(memory.WithClock(clk.Now))
			return s, s
		}},
		{"redis", func(t *testing.T, _ *fakeClock) (storage.Storage, storage.Storage) {
			srv := redistest.StartServer(t)
			open := func() storage.Storage {
				s, err := redis.Open(context.Background(), srv.URL(), redis.Options{})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = s.Close() })
				return s
			}
			return open(), open()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
			sa, sb := tc.store(t, clk)
			var audit bytes.Buffer
			handler := func(s storage.Storage) http.Handler {
				km, err := keys.New(context.Background(), s, keys.Options{Now: clk.Now, KEK: make([]byte, 32), MaxTokenLifetime: time.Hour})
				if err != nil {
					t.Fatal(err)
				}
				return admin.Handler(admin.Deps{Store: s, Keys: km, Audit: observe.NewAudit(slog.New(slog.NewJSONHandler(&audit, nil)))},
					admin.Options{Token: testToken})
			}
			ha, hb := handler(sa), handler(sb)
			rotate := func(h http.Handler) (int, rotateBody) {
				req := httptest.NewRequest(http.MethodPost, "/admin/keys/rotate", nil)
				req.Header.Set("Authorization", "Bearer "+testToken)
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				var b rotateBody
				if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil {
					t.Fatalf("body %q: %v", rec.Body, err)
				}
				return rec.Code, b
			}
			code1, b1 := rotate(ha)
			clk.Advance(2 * time.Second)
			code2, b2 := rotate(hb)
			if code1 != http.StatusOK || b1.Status != "rotated" || b1.Version == 0 {
				t.Errorf("first rotate = %d %+v, want 200 rotated with a version", code1, b1)
			}
			if code2 != http.StatusConflict || b2.Error != "already_rotated" || b2.Version != b1.Version {
				t.Errorf("second rotate = %d %+v, want 409 already_rotated at version %d", code2, b2, b1.Version)
			}
			lines := strings.Split(strings.TrimSpace(audit.String()), "\n")
			var outcomes []string
			for _, l := range lines {
				var ev map[string]any
				_ = json.Unmarshal([]byte(l), &ev)
				if ev["msg"] == "admin_rotate_keys" {
					o, _ := ev["outcome"].(string)
					outcomes = append(outcomes, o)
				}
			}
			if strings.Join(outcomes, ",") != "rotated,already_rotated" {
				t.Errorf("audit outcomes = %v, want [rotated already_rotated]:\n%s", outcomes, audit.String())
			}
		})
	}
}
