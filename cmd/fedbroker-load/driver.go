package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// driver runs workers that each repeat one operation of the chosen flow.
type driver struct {
	o        *options
	client   *http.Client // shared transport; no cookies, no redirects
	next     atomic.Uint64
	workload *workloadIssuer
}

func newDriver(ctx context.Context, o *options) (*driver, error) {
	conns := max(o.concurrency, o.outstanding) * 2
	tr := &http.Transport{
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     30 * time.Second,
	}
	d := &driver{o: o, client: &http.Client{
		Transport:     tr,
		Timeout:       30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
	if o.flow == "exchange" {
		w, err := startWorkloadIssuer(o.workloadAddr)
		if err != nil {
			return nil, err
		}
		d.workload = w
	}
	return d, nil
}

func (d *driver) close() {
	if d.workload != nil {
		d.workload.close()
	}
	d.client.CloseIdleConnections()
}

// base returns the next target, round-robin.
func (d *driver) base() string {
	t := d.o.targets[d.next.Add(1)%uint64(len(d.o.targets))]
	return t.String()
}

// opError is a failed operation, classified for the report.
type opError struct{ kind string }

func (e *opError) Error() string { return e.kind }

func failf(format string, args ...any) error { return &opError{kind: fmt.Sprintf(format, args...)} }

// kindOf names an error for the error table.
func kindOf(err error) string {
	var oe *opError
	if errors.As(err, &oe) {
		return oe.kind
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "timeout"
	}
	s := err.Error()
	switch {
	case strings.Contains(s, "connection refused"):
		return "connection refused"
	case strings.Contains(s, "connection reset"):
		return "connection reset"
	case strings.Contains(s, "Client.Timeout"):
		return "timeout"
	}
	return "transport error"
}

// worker is one goroutine's state: a flow may keep a browser or a refresh
// token between operations.
type worker interface {
	op(ctx context.Context) error
}

func (d *driver) newWorker(ctx context.Context) (worker, error) {
	switch d.o.flow {
	case "client_credentials":
		return &ccWorker{d: d}, nil
	case "exchange":
		return &exchangeWorker{d: d}, nil
	case "login":
		return &loginWorker{d: d}, nil
	case "refresh":
		w := &refreshWorker{d: d}
		if err := w.login(ctx); err != nil {
			return nil, fmt.Errorf("initial login for refresh: %w", err)
		}
		return w, nil
	}
	return nil, fmt.Errorf("unknown flow %q", d.o.flow)
}

// result is what a run measured.
type result struct {
	ops       int64
	elapsed   time.Duration
	latencies []time.Duration // successful operations
	errors    map[string]int64

	// An open-loop run (rate > 0) also reports its timetable: arrivals
	// scheduled, sent and dropped (all outstanding slots busy), the time
	// the timetable ran (window) and how late the latest send was.
	rate                     float64
	outstanding              int
	scheduled, sent, dropped int64
	window, maxLag           time.Duration
}

func (r *result) errorCount() int64 {
	var n int64
	for _, c := range r.errors {
		n += c
	}
	return n
}

func (d *driver) run(ctx context.Context, progress io.Writer) *result {
	o := d.o
	// stopCtx ends the run; operations in flight then finish under ctx, so
	// the broker does not see requests cut off mid-way.
	stopCtx, cancel := context.WithTimeout(ctx, o.duration)
	defer cancel()
	var (
		ops, errs atomic.Int64
		budget    atomic.Int64
		mu        sync.Mutex
		res       = &result{errors: map[string]int64{}}
		wg        sync.WaitGroup
	)
	budget.Store(o.requests)
	take := func() bool { return o.requests == 0 || budget.Add(-1) >= 0 }
	start := time.Now()
	for range o.concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lat []time.Duration
			local := map[string]int64{}
			defer func() {
				mu.Lock()
				res.latencies = append(res.latencies, lat...)
				for k, v := range local {
					res.errors[k] += v
				}
				mu.Unlock()
			}()
			w, err := d.newWorker(ctx)
			if err != nil {
				if stopCtx.Err() == nil {
					local[kindOf(err)]++
					errs.Add(1)
				}
				return
			}
			for stopCtx.Err() == nil && take() {
				t0 := time.Now()
				err := w.op(ctx)
				if ctx.Err() != nil && err != nil {
					return // interrupted: not an error
				}
				if err != nil {
					local[kindOf(err)]++
					errs.Add(1)
					continue
				}
				lat = append(lat, time.Since(t0))
				ops.Add(1)
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	var tick <-chan time.Time
	if o.progress > 0 {
		t := time.NewTicker(o.progress)
		defer t.Stop()
		tick = t.C
	}
	var last int64
	lastAt := start
	for {
		select {
		case <-done:
			res.ops, res.elapsed = ops.Load(), time.Since(start)
			if o.progress > 0 {
				fmt.Fprintln(progress)
			}
			return res
		case now := <-tick:
			n := ops.Load()
			fmt.Fprintf(progress, "\r%6.1fs  ops %-9d  %8.0f/s now  errors %-6d", now.Sub(start).Seconds(), n, float64(n-last)/now.Sub(lastAt).Seconds(), errs.Load())
			last, lastAt = n, now
		}
	}
}

// percentile returns the nearest-rank p-th percentile (0 < p <= 1) of
// sorted: the smallest value that at least a fraction p of the values do
// not exceed.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	// The epsilon keeps a product like 0.9*1000 = 900.0000000000001 at
	// rank 900.
	rank := int(math.Ceil(float64(len(sorted))*p - 1e-9))
	return sorted[min(max(rank-1, 0), len(sorted)-1)]
}

// quantiles are the latency percentiles reported.
var quantiles = []struct {
	name string
	p    float64
}{{"p50", 0.50}, {"p90", 0.90}, {"p95", 0.95}, {"p99", 0.99}, {"p99.9", 0.999}, {"max", 1}}

func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond)) }

func (r *result) print(w io.Writer, o *options) {
	lat := slices.Clone(r.latencies)
	slices.Sort(lat)
	if r.rate > 0 {
		fmt.Fprintf(w, "flow %s  targets %d  open loop at %.1f/s  max outstanding %d  duration %s\n", o.flow, len(o.targets), r.rate, r.outstanding, r.elapsed.Round(time.Millisecond))
		fmt.Fprintf(w, "scheduled %d  sent %d  dropped %d  ok %d  errors %d  achieved %.1f ok/s  (sent %.1f/s; latest send %s after its time)\n",
			r.scheduled, r.sent, r.dropped, r.ops, r.errorCount(), float64(r.ops)/r.elapsed.Seconds(), float64(r.sent)/r.window.Seconds(), ms(r.maxLag))
		fmt.Fprint(w, "latency from scheduled start")
	} else {
		fmt.Fprintf(w, "flow %s  targets %d  concurrency %d  duration %s\n", o.flow, len(o.targets), o.concurrency, r.elapsed.Round(time.Millisecond))
		fmt.Fprintf(w, "ops %d  errors %d  ops/s %.1f\n", r.ops, r.errorCount(), float64(r.ops)/r.elapsed.Seconds())
		fmt.Fprint(w, "latency")
	}
	for _, q := range quantiles {
		fmt.Fprintf(w, " %s %s", q.name, ms(percentile(lat, q.p)))
	}
	fmt.Fprintln(w)
	kinds := make([]string, 0, len(r.errors))
	for k := range r.errors {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		fmt.Fprintf(w, "  error %-40s %d\n", k, r.errors[k])
	}
}
