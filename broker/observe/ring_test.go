package observe

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestAuditRingTeesAndKeepsTheLast(t *testing.T) {
	var out bytes.Buffer
	ring := NewAuditRing(3)
	a := NewAuditTee(slog.New(slog.NewJSONHandler(&out, nil)).With("log", "audit"), ring)
	for _, ev := range []string{"one", "two", "three", "four"} {
		a.Event(ev, "sub", "alice-"+ev, "n", 1)
	}
	got := ring.Recent()
	if len(got) != 3 || got[0].Event != "four" || got[2].Event != "two" {
		t.Fatalf("Recent = %+v", got)
	}
	if got[0].Get("sub") != "alice-four" || got[0].Get("n") != "1" || got[0].Get("audit") != "" || got[0].Get("log") != "" {
		t.Errorf("fields = %+v", got[0].Fields)
	}
	if n := strings.Count(out.String(), `"audit":true`); n != 4 || !strings.Contains(out.String(), `"log":"audit"`) {
		t.Errorf("the log got %d lines:\n%s", n, out.String())
	}
}

func TestSamplerPerMinute(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	s := NewSampler(reg, func() time.Time { return now })
	s.Sample()
	m.SignIn("local", "success")
	m.SignIn("local", "success")
	m.Token("authorization_code", "app")
	m.Request("/token", 500, time.Millisecond)
	now = now.Add(10 * time.Second)
	s.Sample()
	now = now.Add(time.Minute)
	m.SignIn("local", "rejected")
	s.Sample()
	now = now.Add(5 * time.Second)
	s.SampleIfStale() // too soon: no reading
	got := map[SeriesKey]Series{}
	for _, se := range s.PerMinute(60) {
		got[se.SeriesKey] = se
	}
	ok := got[SeriesKey{"sign_ins", "local success"}]
	if ok.Total != 2 || ok.PerMinute[58] != 2 || ok.PerMinute[59] != 0 {
		t.Errorf("success series = %+v", ok)
	}
	if r := got[SeriesKey{"sign_ins", "local rejected"}]; r.Total != 1 || r.PerMinute[59] != 1 {
		t.Errorf("rejected series = %+v", r)
	}
	if got[SeriesKey{"tokens", "authorization_code"}].Total != 1 || got[SeriesKey{"errors", "5xx"}].Total != 1 {
		t.Errorf("series = %+v", got)
	}
}
