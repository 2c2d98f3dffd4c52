package observe

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestHealth(t *testing.T) {
	h := NewHealth()
	now := time.Unix(1700000000, 0)
	h.Record("a", now, "")
	h.Record("a", now.Add(time.Minute), "upstream_unavailable")
	got := h.Get("a")
	if got.Successes != 1 || got.Failures != 1 || got.LastError != "upstream_unavailable" || !got.LastFailure.Equal(now.Add(time.Minute)) {
		t.Errorf("Get(a) = %+v", got)
	}
	if (h.Get("none") != HealthRecord{}) {
		t.Error("an unknown connector has a record")
	}
}

// TestMetricsShareARegistry: a second broker (or a reload) on one registry
// counts into the same series instead of failing to register.
func TestMetricsShareARegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	a, b := NewMetrics(reg), NewMetrics(reg)
	a.Token("refresh_token", "app")
	b.Token("refresh_token", "app")
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range families {
		if mf.GetName() == "fedbroker_tokens_issued_total" {
			if got := mf.GetMetric()[0].GetCounter().GetValue(); got != 2 {
				t.Errorf("tokens issued = %v, want 2", got)
			}
			return
		}
	}
	t.Error("fedbroker_tokens_issued_total not registered")
}

func TestAuditMarksLinesAndDiscardsWhenUnset(t *testing.T) {
	var buf bytes.Buffer
	NewAudit(slog.New(slog.NewJSONHandler(&buf, nil))).Event("login", "sub", "x")
	if !strings.Contains(buf.String(), `"audit":true`) || !strings.Contains(buf.String(), `"msg":"login"`) {
		t.Errorf("audit line = %s", buf.String())
	}
	Audit{}.Event("ignored") // must not panic
}
