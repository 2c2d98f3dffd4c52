package admin_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/fedbroker/fedbroker/broker/admin"
)

func TestStatusStorageDurability(t *testing.T) {
	for _, tc := range []struct {
		name    string
		storage admin.StorageStatus
		want    string
	}{
		{"redis", admin.StorageStatus{Type: "redis", Durability: &admin.Durability{Mode: "rdb", Loss: "a Redis crash rolls back to the last snapshot"}},
			`{"storage":{"type":"redis","durability":{"mode":"rdb","loss":"a Redis crash rolls back to the last snapshot"}}}`},
		{"memory", admin.StorageStatus{Type: "memory"}, `{"storage":{"type":"memory"}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := admin.Handler(admin.Deps{Storage: tc.storage}, admin.Options{Token: "0123456789abcdef0123"})
			req := httptest.NewRequest(http.MethodGet, "/admin/status", nil)
			req.Header.Set("Authorization", "Bearer 0123456789abcdef0123")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK {
				t.Fatalf("GET /admin/status = %d %s", rec.Code, rec.Body)
			}
			var got, want any
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatalf("body %q: %v", rec.Body, err)
			}
			_ = json.Unmarshal([]byte(tc.want), &want)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("status (-want +got):\n%s", diff)
			}
			// Unauthenticated callers get nothing.
			req = httptest.NewRequest(http.MethodGet, "/admin/status", nil)
			rec = httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusUnauthorized {
				t.Errorf("GET /admin/status without a token = %d, want 401", rec.Code)
			}
		})
	}
}
