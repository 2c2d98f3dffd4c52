package console

import (
	"fmt"
	"strings"

	"github.com/fedbroker/fedbroker/broker/observe"
)

// chartMinutes is how many minutes the overview's charts cover.
const chartMinutes = 60

// Chart geometry, in SVG user units.
const (
	chartW, chartH = 600.0, 150.0
	chartPad       = 4.0
)

// chart is one SVG line chart: a line per series, per-minute values.
type chart struct {
	Title string
	// Desc describes the chart for screen readers.
	Desc  string
	Max   float64
	Lines []chartLine
	W, H  float64
}

// chartLine is one series: its polyline points and legend entry. Class
// is the palette class (c0..c7) giving its colour in console.css.
type chartLine struct {
	Label     string
	Class     string
	Points    string
	Total     float64
	PerMinute []float64
}

// charts builds the overview's three charts from the counters of every
// replica.
func charts(series []observe.Series) []chart {
	kinds := []struct{ kind, title, desc string }{
		{"sign_ins", "Sign-ins per minute by connector and outcome", "sign-ins"},
		{"tokens", "Token responses per minute by grant type", "token responses"},
		{"errors", "Server errors (HTTP 5xx) per minute", "5xx responses"},
	}
	var out []chart
	for _, k := range kinds {
		var ss []observe.Series
		for _, s := range series {
			if s.Kind == k.kind {
				ss = append(ss, s)
			}
		}
		out = append(out, buildChart(k.title, k.desc, ss))
	}
	return out
}

func buildChart(title, what string, ss []observe.Series) chart {
	ch := chart{Title: title, W: chartW, H: chartH}
	for _, s := range ss {
		for _, v := range s.PerMinute {
			ch.Max = max(ch.Max, v)
		}
	}
	top := max(ch.Max, 1)
	var total float64
	for i, s := range ss {
		var b strings.Builder
		n := len(s.PerMinute)
		for j, v := range s.PerMinute {
			x := chartPad + float64(j)*(chartW-2*chartPad)/float64(max(n-1, 1))
			y := chartH - chartPad - v/top*(chartH-2*chartPad)
			if j > 0 {
				b.WriteByte(' ')
			}
			fmt.Fprintf(&b, "%.1f,%.1f", x, y)
		}
		label := s.Label
		if label == "" {
			label = "all"
		}
		ch.Lines = append(ch.Lines, chartLine{Label: label, Class: fmt.Sprintf("c%d", i%8), Points: b.String(), Total: s.Total, PerMinute: s.PerMinute})
		total += s.Total
	}
	ch.Desc = fmt.Sprintf("%s over the last %d minutes: %g in all, at most %g in one minute of one series", what, chartMinutes, total, ch.Max)
	return ch
}
