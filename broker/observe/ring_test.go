package observe

import (
	"bytes"
	"log/slog"
	"slices"
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
	if got[SeriesKey{"client_tokens", "app authorization_code"}].Total != 1 {
		t.Errorf("per-client series = %+v", got)
	}
}

// Activities of replicas whose readings end at different minutes are added
// up minute by minute of the clock; minutes outside the window drop out.
func TestMergeActivity(t *testing.T) {
	end := time.Date(2026, 1, 1, 10, 30, 0, 0, time.UTC)
	k := SeriesKey{"tokens", "refresh_token"}
	a := Activity{End: end.Add(20 * time.Second), Series: []Series{{SeriesKey: k, PerMinute: []float64{1, 2, 3}, Total: 6}}}
	// b's last reading was two minutes ago (a replica that died): its
	// minutes are 10:26, 10:27, 10:28.
	b := Activity{End: end.Add(-2 * time.Minute), Series: []Series{
		{SeriesKey: k, PerMinute: []float64{10, 20, 30}, Total: 60},
		{SeriesKey: SeriesKey{"errors", "5xx"}, PerMinute: []float64{0, 0, 7}, Total: 7},
	}}
	got := MergeActivity(end.Add(59*time.Second), 4, a, b)
	if len(got) != 2 || got[0].Kind != "errors" || got[1].Kind != "tokens" {
		t.Fatalf("MergeActivity = %+v", got)
	}
	// Window: 10:27 10:28 10:29 10:30. a: 10:28=1 10:29=2 10:30=3;
	// b: 10:26=10 (outside) 10:27=20 10:28=30.
	if want := []float64{20, 31, 2, 3}; !slices.Equal(got[1].PerMinute, want) || got[1].Total != 56 {
		t.Errorf("tokens = %v (total %v), want %v (56)", got[1].PerMinute, got[1].Total, want)
	}
	if want := []float64{0, 7, 0, 0}; !slices.Equal(got[0].PerMinute, want) || got[0].Total != 7 {
		t.Errorf("errors = %v, want %v", got[0].PerMinute, want)
	}
}
