package observe

import (
	"context"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Sampler reads the broker's counters from its metrics registry at a fixed
// interval and keeps the last hour of readings in memory, so the admin
// console can draw per-minute rates without a Prometheus server: sign-ins
// by connector and outcome, token responses by grant type, and HTTP
// responses with a 5xx status.
type Sampler struct {
	g     prometheus.Gatherer
	every time.Duration
	now   func() time.Time

	mu      sync.Mutex
	samples []sample // ring, oldest overwritten
	next    int
	full    bool
}

type sample struct {
	at     time.Time
	values map[SeriesKey]float64
}

// SeriesKey names one counter series: Kind is "sign_ins", "tokens" or
// "errors"; Label is its labels as text ("google success",
// "authorization_code", "5xx").
type SeriesKey struct {
	Kind  string `json:"kind"`
	Label string `json:"label"`
}

// Series is one counter's per-minute increase over the window, oldest
// minute first, and its total over the window.
type Series struct {
	SeriesKey
	PerMinute []float64 `json:"per_minute"`
	Total     float64   `json:"total"`
}

// SampleEvery is how often Run reads the counters; SampleWindow how long
// the readings are kept.
const (
	SampleEvery  = 10 * time.Second
	SampleWindow = time.Hour
)

// NewSampler reads g (nil: nothing to read). now is the clock (time.Now
// when nil).
func NewSampler(g prometheus.Gatherer, now func() time.Time) *Sampler {
	if now == nil {
		now = time.Now
	}
	return &Sampler{g: g, every: SampleEvery, now: now, samples: make([]sample, int(SampleWindow/SampleEvery)+1)}
}

// Run reads the counters every SampleEvery until ctx is done.
func (s *Sampler) Run(ctx context.Context) {
	s.Sample()
	t := time.NewTicker(s.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.Sample()
		}
	}
}

// SampleIfStale reads the counters unless the last reading is younger
// than the interval (a page view between ticks, or no Run at all).
func (s *Sampler) SampleIfStale() {
	s.mu.Lock()
	last, ok := s.lastLocked()
	s.mu.Unlock()
	if !ok || s.now().Sub(last.at) >= s.every {
		s.Sample()
	}
}

// Sample reads the counters now.
func (s *Sampler) Sample() {
	if s.g == nil {
		return
	}
	mfs, err := s.g.Gather()
	if err != nil && len(mfs) == 0 {
		return
	}
	values := make(map[SeriesKey]float64)
	for _, mf := range mfs {
		switch mf.GetName() {
		case "fedbroker_sign_ins_total":
			for _, m := range mf.GetMetric() {
				values[SeriesKey{"sign_ins", labelText(m.GetLabel(), "connector", "outcome")}] += m.GetCounter().GetValue()
			}
		case "fedbroker_tokens_issued_total":
			for _, m := range mf.GetMetric() {
				v := m.GetCounter().GetValue()
				values[SeriesKey{"tokens", labelText(m.GetLabel(), "grant_type")}] += v
				values[SeriesKey{"client_tokens", labelText(m.GetLabel(), "client_id", "grant_type")}] += v
			}
		case "fedbroker_http_request_duration_seconds":
			for _, m := range mf.GetMetric() {
				if strings.HasPrefix(labelText(m.GetLabel(), "code"), "5") {
					values[SeriesKey{"errors", "5xx"}] += float64(m.GetHistogram().GetSampleCount())
				}
			}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.samples[s.next] = sample{at: s.now(), values: values}
	s.next = (s.next + 1) % len(s.samples)
	if s.next == 0 {
		s.full = true
	}
}

// labelText is the values of the named labels, space separated.
func labelText[L interface {
	GetName() string
	GetValue() string
}](labels []L, names ...string) string {
	var parts []string
	for _, n := range names {
		for _, l := range labels {
			if l.GetName() == n {
				parts = append(parts, l.GetValue())
			}
		}
	}
	return strings.Join(parts, " ")
}

func (s *Sampler) lastLocked() (sample, bool) {
	if !s.full && s.next == 0 {
		return sample{}, false
	}
	return s.samples[(s.next-1+len(s.samples))%len(s.samples)], true
}

// ordered returns the readings kept, oldest first.
func (s *Sampler) ordered() []sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []sample
	if s.full {
		out = append(out, s.samples[s.next:]...)
	}
	return append(out, s.samples[:s.next]...)
}

// PerMinute returns every series' increase in each of the last minutes
// of the clock (oldest first; the last is the minute under way), sorted
// by kind and label. A counter that went down (the process restarted its
// registry) counts from zero.
func (s *Sampler) PerMinute(minutes int) []Series {
	now := s.now().Truncate(time.Minute)
	samples := s.ordered()
	out := make(map[SeriesKey]*Series)
	for i := 1; i < len(samples); i++ {
		prev, cur := samples[i-1], samples[i]
		age := now.Sub(cur.at.Truncate(time.Minute))
		bucket := minutes - 1 - int(age/time.Minute)
		if bucket < 0 || bucket >= minutes {
			continue
		}
		for k, v := range cur.values {
			d := v - prev.values[k]
			if d < 0 {
				d = v
			}
			se := out[k]
			if se == nil {
				se = &Series{SeriesKey: k, PerMinute: make([]float64, minutes)}
				out[k] = se
			}
			se.PerMinute[bucket] += d
			se.Total += d
		}
	}
	// Series seen in the window but without increase still show.
	if len(samples) > 0 {
		for k := range samples[len(samples)-1].values {
			if out[k] == nil {
				out[k] = &Series{SeriesKey: k, PerMinute: make([]float64, minutes)}
			}
		}
	}
	return sortedSeries(out)
}

func sortedSeries(m map[SeriesKey]*Series) []Series {
	list := make([]Series, 0, len(m))
	for _, se := range m {
		list = append(list, *se)
	}
	sort.Slice(list, func(i, j int) bool {
		if list[i].Kind != list[j].Kind {
			return list[i].Kind < list[j].Kind
		}
		return list[i].Label < list[j].Label
	})
	return list
}

// Activity is one process's per-minute counter increases, as a replica
// publishes them for the others (see MergeActivity).
type Activity struct {
	// End is the start of the last minute of Series (the minute under
	// way when it was taken).
	End    time.Time `json:"end"`
	Series []Series  `json:"series"`
}

// Activity returns the last minutes of every series (PerMinute) with the
// minute they end at.
func (s *Sampler) Activity(minutes int) Activity {
	end := s.now().Truncate(time.Minute)
	return Activity{End: end, Series: s.PerMinute(minutes)}
}

// MergeActivity adds up activities of several processes into series of
// the given number of minutes ending with the minute of end: each
// activity's minutes are placed by their clock time, and those outside
// the window are left out (a total counts only the minutes kept).
func MergeActivity(end time.Time, minutes int, acts ...Activity) []Series {
	end = end.Truncate(time.Minute)
	out := make(map[SeriesKey]*Series)
	for _, a := range acts {
		shift := int(end.Sub(a.End.Truncate(time.Minute)) / time.Minute) // minutes a is behind end
		for _, se := range a.Series {
			m := out[se.SeriesKey]
			if m == nil {
				m = &Series{SeriesKey: se.SeriesKey, PerMinute: make([]float64, minutes)}
				out[se.SeriesKey] = m
			}
			n := len(se.PerMinute)
			for j, v := range se.PerMinute {
				// Minute j of a is (n-1-j) minutes before a.End.
				bucket := minutes - 1 - shift - (n - 1 - j)
				if bucket < 0 || bucket >= minutes {
					continue
				}
				m.PerMinute[bucket] += v
				m.Total += v
			}
		}
	}
	return sortedSeries(out)
}
