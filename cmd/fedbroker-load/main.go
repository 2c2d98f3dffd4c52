// Command fedbroker-load drives a running fedbroker on loopback with a
// bounded load and reports throughput, latency percentiles and errors.
//
// Flows (-flow):
//
//	client_credentials  POST /token grant_type=client_credentials
//	refresh             one login per worker, then refresh_token rotations
//	login               the full browser login at a local connector:
//	                    authorize, login form, form POST, code redemption
//	exchange            RFC 8693 token exchange of a workload JWT signed by
//	                    an issuer this tool serves on -workload-addr
//
// Every -target must be a loopback URL; with several targets (replicas
// sharing one Redis and one issuer) requests are spread round-robin, each
// step of a login on the next replica. The run stops after -duration or
// -requests operations, whichever comes first.
//
// By default the load is a closed loop: -concurrency workers each send
// their next operation as soon as the last one is answered, which finds
// the most the broker can serve. -rate N is an open loop instead: N
// operations a second on a fixed timetable, sent whether or not earlier
// ones were answered, each latency measured from its scheduled time, at
// most -max-outstanding outstanding (arrivals beyond that are dropped and
// counted). -find-max runs the closed loop and then the open loop at half
// the throughput it found. See docs/load.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"time"

	"github.com/fedbroker/fedbroker/broker/config"
)

const (
	maxConcurrency = 512
	maxDuration    = 10 * time.Minute
)

// options are the command-line settings.
type options struct {
	targets      []*url.URL
	flow         string
	concurrency  int
	outstanding  int // open loop: the most operations outstanding
	duration     time.Duration
	requests     int64
	clientID     string
	clientSecret string
	publicClient string
	redirectURI  string
	connector    string
	user         string
	password     string
	workloadAddr string
	audience     string
	progress     time.Duration
	rate         float64 // open loop: operations per second; 0: closed loop
	findMax      bool
}

func main() {
	generatorGC(os.Getenv)
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "fedbroker-load:", err)
		os.Exit(2)
	}
}

// generatorGCPercent is the tool's own GOGC unless the environment sets
// one: with Go's default of 100 the tool, allocating a request's worth of
// memory per operation on its one core, collects many times a second, and
// every collection delays the arrivals due meanwhile, which the open loop
// then reports as the broker's latency.
const generatorGCPercent = 400

// generatorGC sets the tool's collector to generatorGCPercent unless
// getenv finds GOGC, which the runtime has applied already.
func generatorGC(getenv func(string) string) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(generatorGCPercent)
	}
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	fs := flag.NewFlagSet("fedbroker-load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	var targets string
	fs.StringVar(&targets, "target", "http://127.0.0.1:5556", "broker base URL(s), comma-separated; loopback only")
	fs.StringVar(&o.flow, "flow", "client_credentials", "client_credentials, refresh, login or exchange")
	fs.IntVar(&o.concurrency, "concurrency", 8, "closed loop: concurrent workers (at most 512)")
	fs.IntVar(&o.outstanding, "max-outstanding", 128, "open loop: the most operations outstanding; arrivals beyond are dropped and counted (at most 512; -flow refresh signs in once per slot first)")
	fs.Float64Var(&o.rate, "rate", 0, "open loop: operations per second on a fixed timetable (0: closed loop)")
	fs.BoolVar(&o.findMax, "find-max", false, "run the closed loop, then the open loop at half its throughput (each for -duration)")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "how long to run (at most 10m)")
	fs.Int64Var(&o.requests, "requests", 0, "stop after this many operations (0: only -duration)")
	fs.StringVar(&o.clientID, "client-id", "", "confidential client for client_credentials and exchange")
	fs.StringVar(&o.clientSecret, "client-secret", "", "its secret (or $FEDBROKER_LOAD_CLIENT_SECRET)")
	fs.StringVar(&o.publicClient, "public-client", "", "public client (PKCE) for login and refresh")
	fs.StringVar(&o.redirectURI, "redirect-uri", "", "a redirect URI registered for -public-client")
	fs.StringVar(&o.connector, "connector", "local", "local connector id for login and refresh")
	fs.StringVar(&o.user, "user", "", "local connector username")
	fs.StringVar(&o.password, "password", "", "its password (or $FEDBROKER_LOAD_PASSWORD)")
	fs.StringVar(&o.workloadAddr, "workload-addr", "127.0.0.1:5599", "loopback address of the workload issuer this tool serves for -flow exchange")
	fs.StringVar(&o.audience, "workload-audience", "fedbroker-load", "aud of the workload JWTs")
	fs.DurationVar(&o.progress, "progress", time.Second, "progress line interval on stderr (0: none)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() != 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if o.clientSecret == "" {
		o.clientSecret = os.Getenv("FEDBROKER_LOAD_CLIENT_SECRET")
	}
	if o.password == "" {
		o.password = os.Getenv("FEDBROKER_LOAD_PASSWORD")
	}
	var problems []string
	for _, t := range strings.Split(targets, ",") {
		u, err := loopbackURL(strings.TrimSpace(t))
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		o.targets = append(o.targets, u)
	}
	if o.concurrency < 1 || o.concurrency > maxConcurrency {
		problems = append(problems, fmt.Sprintf("-concurrency %d: want 1..%d", o.concurrency, maxConcurrency))
	}
	if o.outstanding < 1 || o.outstanding > maxConcurrency {
		problems = append(problems, fmt.Sprintf("-max-outstanding %d: want 1..%d", o.outstanding, maxConcurrency))
	}
	if o.duration <= 0 || o.duration > maxDuration {
		problems = append(problems, fmt.Sprintf("-duration %s: want more than 0 and at most %s", o.duration, maxDuration))
	}
	switch {
	case o.rate < 0 || math.IsNaN(o.rate) || math.IsInf(o.rate, 0):
		problems = append(problems, fmt.Sprintf("-rate %v: want a number of operations per second", o.rate))
	case o.rate > 0 && o.findMax:
		problems = append(problems, "-rate and -find-max: choose one (-find-max finds the rate)")
	case o.rate > 0 && o.requests == 0 && o.rate*o.duration.Seconds() > maxArrivals:
		problems = append(problems, fmt.Sprintf("-rate %v for %s: more than %d arrivals; shorten the run or set -requests", o.rate, o.duration, maxArrivals))
	}
	if o.requests < 0 {
		problems = append(problems, "-requests must not be negative")
	}
	need := func(name, v string) {
		if v == "" {
			problems = append(problems, fmt.Sprintf("-flow %s needs -%s", o.flow, name))
		}
	}
	switch o.flow {
	case "client_credentials":
		need("client-id", o.clientID)
		need("client-secret", o.clientSecret)
	case "exchange":
		need("client-id", o.clientID)
		need("client-secret", o.clientSecret)
		if host, _, err := net.SplitHostPort(o.workloadAddr); err != nil || !config.IsLoopback(host) {
			problems = append(problems, fmt.Sprintf("-workload-addr %q: want a loopback host:port", o.workloadAddr))
		}
	case "login", "refresh":
		need("public-client", o.publicClient)
		need("redirect-uri", o.redirectURI)
		need("user", o.user)
		need("password", o.password)
	default:
		problems = append(problems, fmt.Sprintf("-flow %q: want client_credentials, refresh, login or exchange", o.flow))
	}
	if len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "; "))
	}
	return &o, nil
}

// loopbackURL parses an http(s) URL whose host is a loopback address or
// "localhost"; anything else is refused, so the tool cannot load a
// machine it does not run on.
func loopbackURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("-target %q: want an http(s) URL", s)
	}
	if !config.IsLoopback(u.Hostname()) {
		return nil, fmt.Errorf("-target %q: refusing a non-loopback host (this tool only loads brokers on this machine)", s)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("-target %q: want a base URL without credentials, query or fragment", s)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	return u, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt)
	defer stop()
	d, err := newDriver(ctx, o)
	if err != nil {
		return err
	}
	defer d.close()
	var res *result
	switch {
	case o.rate > 0:
		res = d.runOpen(ctx, o.rate, stderr)
	case o.findMax:
		closed := d.run(ctx, stderr)
		closed.print(stdout, o)
		if closed.ops == 0 {
			return fmt.Errorf("find-max: no operation succeeded in the closed loop (%d errors)", closed.errorCount())
		}
		top := float64(closed.ops) / closed.elapsed.Seconds()
		fmt.Fprintf(stdout, "find-max: closed-loop throughput %.1f/s; open loop at half of it, %.1f/s\n", top, top/2)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		res = d.runOpen(ctx, top/2, stderr)
	default:
		res = d.run(ctx, stderr)
	}
	res.print(stdout, o)
	if res.ops == 0 {
		return fmt.Errorf("no operation succeeded (%d errors)", res.errorCount())
	}
	return nil
}
