package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// maxArrivals bounds the arrivals of one open-loop run (-rate times
// -duration, or -requests): the run keeps one latency per arrival.
const maxArrivals = 10_000_000

// arrivals returns how many requests an open-loop run at rate schedules:
// one every 1/rate seconds for the run's duration, at most -requests and
// maxArrivals.
func arrivals(o *options, rate float64) int64 {
	n := int64(math.Floor(rate * o.duration.Seconds()))
	if o.requests > 0 {
		n = min(n, o.requests)
	}
	return min(max(n, 1), maxArrivals)
}

// runOpen runs an open loop: arrivals on a fixed timetable, one every
// 1/rate seconds from the start, sent whether or not earlier requests have
// been answered. A request's latency runs from the time it was scheduled
// for, not from when it was sent, so a broker (or this tool) that falls
// behind shows up in the latencies instead of slowing the arrivals
// (coordinated omission). At most -max-outstanding requests are outstanding:
// an arrival that finds them all busy is not sent and is counted as
// dropped.
func (d *driver) runOpen(ctx context.Context, rate float64, progress io.Writer) *result {
	o := d.o
	res := &result{errors: map[string]int64{}, rate: rate, outstanding: o.outstanding}
	var mu sync.Mutex // guards res.errors
	fail := func(err error) {
		mu.Lock()
		res.errors[kindOf(err)]++
		mu.Unlock()
	}

	// One worker per outstanding slot, made before the timetable starts
	// (a refresh worker signs in first): idle holds the free ones.
	idle := make(chan worker, o.outstanding)
	var made sync.WaitGroup
	for range o.outstanding {
		made.Add(1)
		go func() {
			defer made.Done()
			w, err := d.newWorker(ctx)
			if err != nil {
				if ctx.Err() == nil {
					fail(err)
				}
				return
			}
			idle <- w
		}()
	}
	made.Wait()
	if len(idle) == 0 {
		return res
	}

	n := arrivals(o, rate)
	// lat[i] is arrival i's latency when it succeeded; -1 otherwise.
	lat := make([]time.Duration, n)
	var (
		sent, dropped, ops, errs atomic.Int64
		flight                   sync.WaitGroup
		maxLag                   time.Duration
	)
	start := time.Now()
	at := func(i int64) time.Time { return start.Add(time.Duration(float64(i) * float64(time.Second) / rate)) }
	stopProgress := d.progressLoop(progress, start, func() string {
		return fmt.Sprintf("sent %-9d ok %-9d dropped %-7d errors %-6d outstanding %-4d", sent.Load(), ops.Load(), dropped.Load(), errs.Load(), o.outstanding-len(idle))
	})
	timer := time.NewTimer(0)
	<-timer.C
	var i int64
schedule:
	for ; i < n; i++ {
		due := at(i)
		if wait := time.Until(due); wait > 0 {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				timer.Stop()
				break schedule
			case <-timer.C:
			}
		}
		maxLag = max(maxLag, time.Since(due))
		lat[i] = -1
		select {
		case w := <-idle:
			sent.Add(1)
			flight.Add(1)
			go func(i int64, due time.Time, w worker) {
				defer flight.Done()
				err := w.op(ctx)
				took := time.Since(due)
				idle <- w
				switch {
				case err == nil:
					lat[i] = took
					ops.Add(1)
				case ctx.Err() == nil: // interrupted is not an error
					errs.Add(1)
					fail(err)
				}
			}(i, due, w)
		default:
			dropped.Add(1)
		}
	}
	res.window = time.Since(start)
	flight.Wait()
	res.elapsed = time.Since(start)
	stopProgress()
	res.scheduled, res.sent, res.dropped, res.ops, res.maxLag = i, sent.Load(), dropped.Load(), ops.Load(), maxLag
	res.latencies = make([]time.Duration, 0, res.ops)
	for _, l := range lat[:i] {
		if l >= 0 {
			res.latencies = append(res.latencies, l)
		}
	}
	return res
}

// progressLoop prints line() every -progress on w until the returned stop
// is called.
func (d *driver) progressLoop(w io.Writer, start time.Time, line func() string) (stop func()) {
	if d.o.progress <= 0 {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(d.o.progress)
		defer t.Stop()
		for {
			select {
			case <-done:
				fmt.Fprintln(w)
				return
			case now := <-t.C:
				fmt.Fprintf(w, "\r%6.1fs  %s", now.Sub(start).Seconds(), line())
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}
