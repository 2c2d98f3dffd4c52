package broker

import (
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the broker's Prometheus series. Labels carry ids only.
type metrics struct {
	signIns    *prometheus.CounterVec
	tokens     *prometheus.CounterVec
	authorizes *prometheus.CounterVec
	storage    prometheus.Counter
	latency    *prometheus.HistogramVec
	upstream   *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	return &metrics{
		signIns: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fedbroker_sign_ins_total", Help: "Sign-ins by connector and outcome.",
		}, []string{"connector", "outcome"})),
		tokens: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fedbroker_tokens_issued_total", Help: "Token responses by grant type.",
		}, []string{"grant_type"})),
		authorizes: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fedbroker_authorize_requests_total", Help: "Authorization requests that reached a sign-in page, by client.",
		}, []string{"client_id"})),
		storage: register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fedbroker_storage_errors_total", Help: "Requests that failed because storage was unavailable.",
		})),
		latency: register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "fedbroker_http_request_duration_seconds", Help: "Request latency by route and status.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"route", "code"})),
		upstream: register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "fedbroker_upstream_request_duration_seconds", Help: "Latency of calls to upstream identity providers by host and outcome (HTTP status or error).",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"host", "code"})),
	}
}

// register adds c to reg; when an identical collector is already there (a
// second broker on one registry, or a reload) it returns that one.
func register[T prometheus.Collector](reg prometheus.Registerer, c T) T {
	if err := reg.Register(c); err != nil {
		if are, ok := err.(prometheus.AlreadyRegisteredError); ok {
			if existing, ok := are.ExistingCollector.(T); ok {
				return existing
			}
		}
	}
	return c
}

func (m *metrics) signIn(connector, outcome string) {
	m.signIns.WithLabelValues(connector, outcome).Inc()
}
func (m *metrics) token(grant string)      { m.tokens.WithLabelValues(grant).Inc() }
func (m *metrics) authorize(client string) { m.authorizes.WithLabelValues(client).Inc() }
func (m *metrics) storageError()           { m.storage.Inc() }

// middleware records request latency by route pattern (never by raw path,
// which would let a client create unbounded series).
func (m *metrics) middleware(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		route := c.Path()
		if route == "" {
			route = "unmatched"
		}
		status := c.Response().Status
		if err != nil {
			if he, ok := err.(*echo.HTTPError); ok {
				status = he.Code
			}
		}
		m.latency.WithLabelValues(route, strconv.Itoa(status)).Observe(time.Since(start).Seconds())
		return err
	}
}

// keyRotations exposes the signing key rotations this replica has seen.
func registerKeyRotations(reg prometheus.Registerer, rotations func() uint64) {
	_ = reg.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "fedbroker_signing_key_rotations_total", Help: "Signing key rotations seen by this replica.",
	}, func() float64 { return float64(rotations()) }))
}

// instrumentedTransport times every call to an upstream. Hosts come from
// configuration (connectors' issuers), so the label stays bounded.
type instrumentedTransport struct {
	base http.RoundTripper
	hist *prometheus.HistogramVec
}

func (t instrumentedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := t.base.RoundTrip(r)
	code := "error"
	if err == nil {
		code = strconv.Itoa(resp.StatusCode)
	}
	t.hist.WithLabelValues(r.URL.Host, code).Observe(time.Since(start).Seconds())
	return resp, err
}

// instrument returns a copy of client whose calls are timed.
func (m *metrics) instrument(client *http.Client) *http.Client {
	c := *client
	base := c.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	c.Transport = instrumentedTransport{base: base, hist: m.upstream}
	return &c
}
