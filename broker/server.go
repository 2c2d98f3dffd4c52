// Package broker is the OpenID Connect provider: it wires storage, keys,
// the compiled configuration and the flow packages into one server, holds
// the route table, and serves discovery and the JWKS. The flows themselves
// live below it: authflow (browser sign-in and logout), grants (the token
// endpoint), tokens (minting and checking the broker's tokens), clientauth,
// runtime (the compiled configuration) and admin.
package broker

import (
	"context"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/fedbroker/fedbroker/broker/admin"
	"github.com/fedbroker/fedbroker/broker/authflow"
	"github.com/fedbroker/fedbroker/broker/clientauth"
	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/console"
	"github.com/fedbroker/fedbroker/broker/grants"
	"github.com/fedbroker/fedbroker/broker/keys"
	"github.com/fedbroker/fedbroker/broker/logout"
	"github.com/fedbroker/fedbroker/broker/oauth"
	"github.com/fedbroker/fedbroker/broker/observe"
	"github.com/fedbroker/fedbroker/broker/runtime"
	"github.com/fedbroker/fedbroker/broker/storage"
	redisstore "github.com/fedbroker/fedbroker/broker/storage/redis"
	"github.com/fedbroker/fedbroker/broker/tokens"
	"github.com/fedbroker/fedbroker/connectors/jwks"
	"github.com/fedbroker/fedbroker/templates"
)

// Options are the broker's dependencies. Storage and Keys are required.
type Options struct {
	Storage storage.Storage
	Keys    *keys.Manager
	// Logger receives operational logs; Audit receives one JSON line per
	// sign-in, rejection, token grant and admin action. Neither ever sees a
	// secret, password, code or token.
	Logger *slog.Logger
	Audit  *slog.Logger
	// HTTPClient is used by connectors to reach upstreams.
	HTTPClient *http.Client
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Registerer receives the broker's Prometheus metrics; a private
	// registry when nil.
	Registerer prometheus.Registerer
}

// Server is one broker replica. It holds no per-login state in memory:
// every step of every flow can be served by any replica sharing the storage.
type Server struct {
	issuer string // exactly as configured, no trailing slash
	paths  paths

	store    storage.Storage
	keys     *keys.Manager
	log      *slog.Logger
	audit    observe.Audit
	metrics  *observe.Metrics
	health   *observe.Health
	gatherer prometheus.Gatherer
	pages    *oauth.Writer
	// deps compile every configuration; KeySets in it outlives reloads.
	deps runtime.Deps
	rt   atomic.Pointer[runtime.Runtime]
	// running is the configuration this server runs: New's, with the
	// reloadable sections of the last reload. Reloads diff against it, one
	// at a time under reloadMu.
	reloadMu sync.Mutex
	running  *config.Config

	tokens  *tokens.Authority
	clients *clientauth.Authenticator
	logout  *logout.Service
	flow    *authflow.Flow
	par     *authflow.PAR
	token   *grants.Endpoint
	echo    *echo.Echo

	// draining is set by Drain: /readyz answers 503 from then on.
	draining atomic.Bool
	// storageStatus is GET /admin/status's storage: the type, and Redis's
	// durability as Start read it.
	storageStatus admin.StorageStatus
	// auditRing keeps the recent audit lines for the admin console;
	// samples the counters' last hour for its charts.
	auditRing *observe.AuditRing
	samples   *observe.Sampler
	// replica is this process's heartbeat record (see replicas.go);
	// beating is set while Run's heartbeat runs, beatDone closed when it
	// wrote its last record.
	replica  replicaSelf
	beating  atomic.Bool
	beatDone chan struct{}
}

// Drain makes /readyz answer 503 from now on while everything else keeps
// being served, so that load balancers stop sending new requests before the
// listener closes. fedbroker serve calls it on SIGTERM; it cannot be undone.
func (s *Server) Drain() { s.draining.Store(true) }

// Draining reports whether Drain was called.
func (s *Server) Draining() bool { return s.draining.Load() }

// paths are the broker's endpoints below the issuer's path.
type paths struct {
	discovery, jwks, authorize, token, userinfo, revoke, logout, introspect string
	login, callback, static, healthz, readyz, saml                          string
	// root is the issuer's own path ("" at the host's root); cancel is the
	// sign-in's Cancel link, outside login so no connector id can take it.
	root, cancel string
	// device is the verification page of the device grant (RFC 8628),
	// deviceAuth its device authorization endpoint.
	device, deviceAuth string
	// par is the pushed authorization request endpoint (RFC 9126).
	par string
}

func newPaths(p string) paths {
	return paths{
		root:       p,
		cancel:     p + "/cancel",
		discovery:  p + "/.well-known/openid-configuration",
		jwks:       p + "/keys",
		authorize:  p + "/authorize",
		token:      p + "/token",
		userinfo:   p + "/userinfo",
		revoke:     p + "/revoke",
		logout:     p + "/logout",
		introspect: p + "/introspect",
		login:      p + "/login",
		callback:   p + "/callback",
		static:     p + "/static",
		healthz:    p + "/healthz",
		readyz:     p + "/readyz",
		saml:       p + "/saml",
		device:     p + "/device",
		deviceAuth: p + "/device/authorization",
		par:        p + "/par",
	}
}

// New builds a broker from a validated configuration. It opens every
// connector and compiles every mapping; any problem is returned with its
// YAML path (as config.Errors).
func New(ctx context.Context, cfg *config.Config, opts Options) (*Server, error) {
	if opts.Storage == nil || opts.Keys == nil {
		return nil, errors.New("broker: storage and keys are required")
	}
	u, err := url.Parse(cfg.Issuer)
	if err != nil {
		return nil, fmt.Errorf("broker: issuer: %w", err)
	}
	issuerPath := strings.TrimSuffix(u.Path, "/")
	s := &Server{
		issuer: strings.TrimSuffix(cfg.Issuer, "/"),
		paths:  newPaths(issuerPath),
		store:  opts.Storage,
		keys:   opts.Keys,
		log:    opts.Logger,
		health: observe.NewHealth(),
	}
	s.replica, s.beatDone = newReplicaSelf(opts.Now), make(chan struct{})
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	auditLog := opts.Audit
	if auditLog == nil {
		auditLog = s.log.With("log", "audit")
	}
	s.auditRing = observe.NewAuditRing(2000)
	s.audit = observe.NewAuditTee(auditLog, s.auditRing)
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	client := opts.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: 15 * time.Second}
	}
	reg := opts.Registerer
	if reg == nil {
		r := prometheus.NewRegistry()
		r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		reg, s.gatherer = r, r
	} else if g, ok := reg.(prometheus.Gatherer); ok {
		s.gatherer = g
	}
	s.metrics = observe.NewMetrics(reg)
	s.samples = observe.NewSampler(s.gatherer, now)
	client = s.metrics.Instrument(client)
	observe.RegisterKeyRotations(reg, s.keys.Rotations)
	observe.RegisterKeyRegressions(reg, s.keys.Regressions)
	if rc, ok := s.store.(interface{ Regressions() int64 }); ok {
		observe.RegisterStorageRegressions(reg, rc.Regressions)
	}
	tmpl, err := templates.New()
	if err != nil {
		return nil, err
	}
	s.pages = &oauth.Writer{Issuer: s.issuer, IssuerPath: issuerPath, Templates: tmpl, Log: s.log}
	kek, err := cfg.Signing.KEK()
	if err != nil {
		return nil, err
	}
	sealer, err := tokens.NewSealer(kek)
	if err != nil {
		return nil, err
	}
	browserKey, err := browserBindingKey(kek, cfg.Storage.Type, s.log)
	if err != nil {
		return nil, err
	}
	s.deps = runtime.Deps{
		Issuer:           s.issuer,
		Logger:           s.log,
		HTTPClient:       client,
		Now:              now,
		Algorithms:       s.keys.Algorithms(),
		ReplayCache:      s.store,
		KeySets:          jwks.NewCache(jwks.Options{Client: client, Now: now}),
		DeferUnreachable: true,
	}
	rt, err := runtime.Compile(ctx, cfg, s.deps)
	if err != nil {
		return nil, err
	}
	s.rt.Store(rt)
	s.running = cfg
	s.storageStatus = admin.StorageStatus{Type: cfg.Storage.Type}

	s.tokens = tokens.New(tokens.Deps{Issuer: s.issuer, Keys: s.keys, Store: s.store, Now: now, Audit: s.audit})
	s.logout = logout.New(logout.Deps{
		Store: s.store, Tokens: s.tokens, Runtime: s.rt.Load, Metrics: s.metrics, Audit: s.audit, Log: s.log, Now: now,
		HTTP: &http.Client{Transport: client.Transport, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
	}, logout.SettingsOf(cfg.Logout.Backchannel))
	s.clients = clientauth.New(clientauth.Deps{Issuer: s.issuer, Replay: s.store, Now: now, Audit: s.audit})
	s.flow = authflow.New(authflow.Deps{
		Issuer: s.issuer, IssuerPath: issuerPath, Store: s.store, Tokens: s.tokens, Sealer: sealer,
		Now: now, Audit: s.audit, Logger: s.log, Metrics: s.metrics, Health: s.health, Pages: s.pages, Runtime: s.rt.Load,
		BrowserKey: browserKey, SignInLimit: cfg.HTTP.SignIns(), Logout: s.logout,
	})
	s.par = authflow.NewPAR(s.flow, s.clients, cfg.PAR)
	s.token = &grants.Endpoint{
		Grants:  grants.New(grants.Deps{Tokens: s.tokens, Sealer: sealer, Store: s.store, Now: now, Audit: s.audit, Logger: s.log}),
		Clients: s.clients,
		Runtime: s.rt.Load,
		Issued:  s.metrics.Token,
	}
	s.echo = s.routes(cfg)
	return s, nil
}

// browserBindingKey is the key that signs the browser-binding cookie. It
// is derived from the key-encryption key (HKDF-SHA256, its own label), so
// every replica has it. Without a key-encryption key: a random key when
// storage is in memory or SQLite (one process holds all state; after a
// restart, sign-ins that were half-way through start again), and none —
// unsigned ids, with a warning — when replicas share storage, since a
// per-process key would refuse every sign-in that moves between replicas.
func browserBindingKey(kek []byte, storageType string, log *slog.Logger) ([]byte, error) {
	switch {
	case len(kek) > 0:
		return hkdf.Key(sha256.New, kek, nil, "fedbroker browser binding v1", 32)
	case storageType == "memory" || storageType == "sqlite":
		key := make([]byte, 32)
		_, _ = rand.Read(key) // never fails on supported platforms (Go 1.24+)
		return key, nil
	default:
		log.Warn("browser-binding cookies are not signed: set signing.key_encryption_key so that only browser ids the broker made are accepted")
		return nil, nil
	}
}

// reloadable are the top-level sections Reload swaps in: what
// runtime.Compile reads. The others are read once, by New, Start or
// `fedbroker serve` — the issuer, the listeners and their middleware
// (http: addr, tls, trusted_proxies, hsts_max_age, sign_in_limit), the
// storage, the signing keys and the key-encryption key (signing), the
// admin listener (admin) — and take a restart. A section added to Config
// needs a restart until it is listed here.
var reloadable = map[string]bool{
	"tokens": true, "connectors": true, "mappings": true, "clients": true, "links": true, "workloads": true,
	"par":    true, // not compiled: ReloadWithReport hands it to PAR.Configure
	"logout": true, // not compiled: ReloadWithReport hands it to logout.Service.Configure
}

// Run does the broker's background work until ctx is done: it delivers
// back-channel logout tokens that are due (every replica does, taking
// turns through storage). Start runs it.
func (s *Server) Run(ctx context.Context) {
	go s.samples.Run(ctx) // the admin console's charts
	s.startHeartbeat(ctx)
	s.logout.Run(ctx)
}

// startHeartbeat starts the heartbeat (the console's list of replicas and
// fleet charts) unless it runs already. Start calls it before it starts
// Run in a goroutine, so that an Instance closed at once still waits for
// the heartbeat's last record (WaitStopped) rather than racing its start.
func (s *Server) startHeartbeat(ctx context.Context) {
	if s.beating.CompareAndSwap(false, true) {
		go s.heartbeat(ctx)
	}
}

// Reload is ReloadWithReport without the report.
func (s *Server) Reload(ctx context.Context, cfg *config.Config) error {
	_, err := s.ReloadWithReport(ctx, cfg)
	return err
}

// ReloadWithReport compiles cfg and, only if everything compiles, swaps it
// in atomically. Logins in flight keep working: their state is in storage
// and refers to clients and connectors by id.
//
// The report lists every field that differs from the running
// configuration: applied (clients, connectors, mappings, workloads, links,
// tokens) or needing a restart (http, storage, signing, admin); the old
// values of the latter keep running, and every later reload reports them
// again until a restart. Applying only the reloadable part leaves a
// consistent server, since nothing reloadable is derived from a
// non-reloadable section except through what the running server has: a
// client asking for an id_token_signed_response_alg that only the new
// signing.algorithms would add is refused with its path (the running keys
// lack it), and connectors use the running storage. A changed issuer
// refuses the whole reload. The connectors are opened again even when
// nothing changed, so files they read (SAML metadata, JWKS files) are read
// again.
func (s *Server) ReloadWithReport(ctx context.Context, cfg *config.Config) (config.ReloadReport, error) {
	var rep config.ReloadReport
	if strings.TrimSuffix(cfg.Issuer, "/") != s.issuer {
		return rep, config.Errors{{Path: "issuer", Message: "cannot change while running; restart instead"}}
	}
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	rt, err := runtime.Compile(ctx, cfg, s.deps)
	if err != nil {
		return rep, err
	}
	next := *cfg
	next.Issuer = s.running.Issuer // the same issuer, perhaps with a trailing slash
	for _, c := range config.Diff(s.running, &next) {
		if reloadable[c.Section()] {
			rep.Applied = append(rep.Applied, c)
		} else {
			rep.RestartRequired = append(rep.RestartRequired, c)
		}
	}
	s.running = config.WithSections(s.running, &next, func(section string) bool { return reloadable[section] })
	old := s.rt.Swap(rt)
	old.Close()
	s.par.Configure(s.running.PAR)
	s.logout.Configure(logout.SettingsOf(s.running.Logout.Backchannel))
	s.log.Info("configuration reloaded", "connectors", len(rt.Connectors()))
	return rep, nil
}

// Check opens and compiles everything in cfg the way New would, without
// serving, and returns every problem with its YAML path: what `fedbroker
// check` runs after config validation (the problems inside connectors' and
// workload issuers' `config:` blocks are reported here). With offline set,
// connectors are validated but not opened, so nothing reaches the network.
func Check(ctx context.Context, cfg *config.Config, opts Options, offline bool) error {
	var ps config.Errors
	if cfg.Storage.Type == "redis" && cfg.Storage.Redis.URL != "" {
		if err := redisstore.CheckURL(cfg.Storage.Redis.URL); err != nil {
			ps = append(ps, config.Problem{Path: "storage.redis.url", Message: err.Error()})
		}
	}
	err := runtime.Check(ctx, cfg, runtime.Deps{Issuer: cfg.Issuer, Logger: opts.Logger, HTTPClient: opts.HTTPClient, Now: opts.Now}, offline)
	var more config.Errors
	switch {
	case errors.As(err, &more):
		ps = append(ps, more...)
	case err != nil:
		return err
	}
	if len(ps) > 0 {
		return ps
	}
	return nil
}

// Handler is the broker's public HTTP handler.
func (s *Server) Handler() http.Handler { return s.echo }

// Gatherer returns the registry holding the broker's metrics, for /metrics.
func (s *Server) Gatherer() prometheus.Gatherer { return s.gatherer }

// Issuer returns the issuer URL.
func (s *Server) Issuer() string { return s.issuer }

// AdminOptions configure the admin API (see admin.Options).
type AdminOptions = admin.Options

// AdminHandler returns the admin listener's handler: the admin API (JSON;
// see docs/admin.md) and the admin console under /console/ (see
// docs/console.md), sharing one credential check and failure limiter. It
// runs on its own listener, loopback by default.
func (s *Server) AdminHandler(opts AdminOptions) http.Handler {
	creds := admin.NewCredentials(opts)
	api := admin.Handler(admin.Deps{
		Store: s.store, Keys: s.keys, Health: s.health, Audit: s.audit, Logger: s.log,
		Runtime: s.rt.Load, Storage: s.storageStatus, Recover: recoverPanics, Logout: s.logout,
		Credentials: creds,
	}, opts)
	con := console.New(console.Deps{
		Issuer: s.issuer, Runtime: s.rt.Load, Config: s.runningConfig, Store: s.store, Keys: s.keys,
		Tokens: s.tokens, Logout: s.logout, Health: s.health, Audit: s.audit, AuditRing: s.auditRing,
		AuditFile: opts.AuditFile, Logger: s.log, Storage: s.storageStatus, Credentials: creds,
		Reload: opts.Reloader(), Gatherer: s.gatherer, Samples: s.samples, Readiness: s.readiness,
		Recover: recoverPanics, Replica: s.replicaRecord, Now: s.replica.now,
	})
	mux := http.NewServeMux()
	mux.Handle(console.Prefix+"/", con.Handler())
	mux.Handle(console.Prefix, con.Handler())
	mux.Handle("/", api)
	return mux
}

// runningConfig is the configuration being served (for the console).
func (s *Server) runningConfig() *config.Config {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	return s.running
}

// readiness is what /readyz and the console report: nil when the replica
// may take traffic, else why not.
func (s *Server) readiness(ctx context.Context) error {
	if s.Draining() {
		return errors.New("draining: shutting down")
	}
	if err := s.store.Ping(ctx); err != nil {
		s.log.Warn("readiness: storage", "err", err)
		return errors.New("storage unavailable")
	}
	if err := s.keys.Readiness(); err != nil {
		// The Manager logs the reason at ERROR when it changes; the
		// status names it for whoever looks at the probe.
		return fmt.Errorf("signing keys not usable: %w", err)
	}
	return nil
}
