// Package observe is what the broker tells its operators: Prometheus
// metrics, the audit log, and each connector's recent sign-in health. Every
// label and audit field carries identifiers only, never a secret, code,
// token or password.
package observe

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the broker's Prometheus series.
type Metrics struct {
	signIns    *prometheus.CounterVec
	tokens     *prometheus.CounterVec
	authorizes *prometheus.CounterVec
	storage    prometheus.Counter
	latency    *prometheus.HistogramVec
	upstream   *prometheus.HistogramVec
	// backchannel counts back-channel logout deliveries by outcome;
	// pending is how many are stored.
	backchannel *prometheus.CounterVec
	pending     prometheus.Gauge
}

// NewMetrics registers the broker's series on reg. A second broker on the
// same registry (or a reload) shares the series already there.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	return &Metrics{
		signIns: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fedbroker_sign_ins_total", Help: "Sign-ins by connector and outcome.",
		}, []string{"connector", "outcome"})),
		tokens: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fedbroker_tokens_issued_total", Help: "Token responses by grant type and client.",
		}, []string{"grant_type", "client_id"})),
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
		backchannel: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fedbroker_backchannel_logout_total", Help: "Back-channel logout delivery attempts by client and outcome (delivered, retry, failed, dropped).",
		}, []string{"client_id", "outcome"})),
		pending: register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "fedbroker_backchannel_logout_pending", Help: "Back-channel logout deliveries stored, not yet delivered or given up.",
		})),
	}
}

// register adds c to reg; when an identical collector is already there it
// returns that one.
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

// SignIn counts a sign-in at connector with its outcome (success,
// rejected, upstream_error, ...).
func (m *Metrics) SignIn(connector, outcome string) {
	m.signIns.WithLabelValues(connector, outcome).Inc()
}

// Token counts a token response of grant.
func (m *Metrics) Token(grant, clientID string) { m.tokens.WithLabelValues(grant, clientID).Inc() }

// Authorize counts an authorization request that reached a sign-in page.
func (m *Metrics) Authorize(client string) { m.authorizes.WithLabelValues(client).Inc() }

// BackchannelLogout counts a back-channel logout delivery attempt to
// clientID with its outcome: delivered, retry, failed, dropped.
func (m *Metrics) BackchannelLogout(clientID, outcome string) {
	m.backchannel.WithLabelValues(clientID, outcome).Inc()
}

// BackchannelLogoutPending sets how many back-channel logout deliveries
// are stored.
func (m *Metrics) BackchannelLogoutPending(n int) { m.pending.Set(float64(n)) }

// StorageError counts a request that failed because storage was down.
func (m *Metrics) StorageError() { m.storage.Inc() }

// Request records one request's latency under its route pattern (never the
// raw path, which would let a client create unbounded series).
func (m *Metrics) Request(route string, status int, d time.Duration) {
	m.latency.WithLabelValues(route, strconv.Itoa(status)).Observe(d.Seconds())
}

// RegisterKeyRegressions exposes how often this replica found the stored
// key set older than the one it holds (storage rolled back or lost data)
// and wrote its own forward.
func RegisterKeyRegressions(reg prometheus.Registerer, regressions func() int64) {
	_ = reg.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "fedbroker_key_set_regressions_total", Help: "Stored key sets found older than this replica's and written forward.",
	}, func() float64 { return float64(regressions()) }))
}

// RegisterStorageRegressions exposes how often this replica found storage
// empty or rolled back (storage.Epoch) and started a new epoch.
func RegisterStorageRegressions(reg prometheus.Registerer, regressions func() int64) {
	_ = reg.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "fedbroker_storage_regressions_total", Help: "Times storage was found empty or rolled back; state from before is refused.",
	}, func() float64 { return float64(regressions()) }))
}

// RegisterKeyRotations exposes the signing key rotations this replica has
// seen.
func RegisterKeyRotations(reg prometheus.Registerer, rotations func() uint64) {
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

// Instrument returns a copy of client whose calls are timed.
func (m *Metrics) Instrument(client *http.Client) *http.Client {
	c := *client
	base := c.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	c.Transport = instrumentedTransport{base: base, hist: m.upstream}
	return &c
}
