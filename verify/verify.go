// Package verify checks access tokens issued by the broker's internal
// issuer, locally, with no call to the broker per request.
//
// A service creates one Verifier at start-up with New, which reads the
// issuer's OpenID discovery document and key set once, then keeps the key
// set fresh in the background. Verifier.Verify checks one bearer token,
// Verifier.VerifyDPoP one token bound to a DPoP key (RFC 9449) with its
// proof; Verifier.Middleware guards net/http handlers, accepting both, and
// puts the verified *Claims in the request context. Package echoverify
// provides the same middleware for echo, so that only services using echo
// depend on it.
//
// Every check that makes a token trustworthy is always on: the signature
// (with an explicit algorithm allowlist that never contains "none" or an
// HMAC algorithm), the exact issuer, the audience, exp/nbf/iat with a small
// leeway, and the "at+jwt" type header of RFC 9068 access tokens. Options
// can only tighten them, or tune the leeway within a small bound.
package verify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/fedbroker/fedbroker/dpop"
	"github.com/fedbroker/fedbroker/jwa"
)

const (
	// MaxTokenSize is the largest token Verify will parse; larger strings
	// are refused as ErrMalformed before any decoding.
	MaxTokenSize = 32 << 10

	// DefaultLeeway is the clock skew allowed on exp, nbf and iat.
	DefaultLeeway = 30 * time.Second
	// MaxLeeway is the largest leeway WithLeeway accepts.
	MaxLeeway = 5 * time.Minute
	// DefaultRefreshInterval is the minimum time between two key set
	// fetches caused by tokens naming an unknown key.
	DefaultRefreshInterval = 30 * time.Second
)

// DefaultAlgorithms is the signature algorithm allowlist used unless
// WithAlgorithms narrows it: the algorithms the broker signs with.
var DefaultAlgorithms = []jose.SignatureAlgorithm{jose.ES256, jose.RS256, jose.EdDSA}

// Verifier verifies access tokens of one issuer for one audience. It is
// safe for concurrent use. Call Close when done to stop its background key
// refresh.
type Verifier struct {
	issuer   string
	audience string
	realm    string
	algs     []jose.SignatureAlgorithm
	leeway   time.Duration
	scopes   []string
	now      func() time.Time
	keys     *keySet
	dpopBase string
	replay   *dpop.ReplayCache
	// replayStore, when set, is where accepted one-time identifiers are
	// recorded instead of replay.
	replayStore ReplayStore

	cancel    context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once
}

type config struct {
	client   *http.Client
	now      func() time.Time
	log      *slog.Logger
	leeway   time.Duration
	algs     []jose.SignatureAlgorithm
	interval time.Duration
	scopes   []string
	realm    string
	errs     []error

	dpopBase    string
	replaySize  int
	replayStore ReplayStore
}

// Option configures New.
type Option func(*config)

// WithHTTPClient sets the client used for discovery and key set fetches.
// The default is a client with a 30-second timeout.
func WithHTTPClient(c *http.Client) Option {
	return func(cfg *config) {
		if c == nil {
			cfg.errs = append(cfg.errs, errors.New("verify: WithHTTPClient: nil client"))
			return
		}
		cfg.client = c
	}
}

// WithClock sets the clock used for token lifetimes and key set freshness.
// The default is time.Now.
func WithClock(now func() time.Time) Option {
	return func(cfg *config) {
		if now == nil {
			cfg.errs = append(cfg.errs, errors.New("verify: WithClock: nil clock"))
			return
		}
		cfg.now = now
	}
}

// WithLeeway sets the allowed clock skew on exp, nbf and iat, between 0 and
// MaxLeeway. The default is DefaultLeeway.
func WithLeeway(d time.Duration) Option {
	return func(cfg *config) {
		if d < 0 || d > MaxLeeway {
			cfg.errs = append(cfg.errs, fmt.Errorf("verify: WithLeeway: %s outside [0, %s]", d, MaxLeeway))
			return
		}
		cfg.leeway = d
	}
}

// WithAlgorithms replaces the signature algorithm allowlist. Only
// asymmetric JWS algorithms are accepted; "none" and HMAC algorithms make
// New fail.
func WithAlgorithms(algs ...jose.SignatureAlgorithm) Option {
	return func(cfg *config) {
		if len(algs) == 0 {
			cfg.errs = append(cfg.errs, errors.New("verify: WithAlgorithms: empty allowlist"))
			return
		}
		for _, a := range algs {
			if !jwa.IsAsymmetric(string(a)) {
				cfg.errs = append(cfg.errs, fmt.Errorf("verify: WithAlgorithms: algorithm %q not allowed", a))
				return
			}
		}
		cfg.algs = slices.Clone(algs)
	}
}

// WithRefreshInterval sets the minimum time between two key set fetches
// caused by tokens naming an unknown key ID; a flood of random key IDs
// causes at most one fetch per interval. The default is
// DefaultRefreshInterval; it must be at least one second.
func WithRefreshInterval(d time.Duration) Option {
	return func(cfg *config) {
		if d < time.Second {
			cfg.errs = append(cfg.errs, fmt.Errorf("verify: WithRefreshInterval: %s is less than 1s", d))
			return
		}
		cfg.interval = d
	}
}

// WithLogger sets the logger for key set refreshes and failures. Tokens
// and claims are never logged. The default discards.
func WithLogger(l *slog.Logger) Option {
	return func(cfg *config) {
		if l == nil {
			cfg.errs = append(cfg.errs, errors.New("verify: WithLogger: nil logger"))
			return
		}
		cfg.log = l
	}
}

// WithRequiredScopes makes Verify refuse, with a *ScopeError, every token
// that lacks any of scopes. Middleware adds its own per-route scopes on top.
func WithRequiredScopes(scopes ...string) Option {
	return func(cfg *config) {
		for _, s := range scopes {
			if s == "" || strings.ContainsAny(s, " \t\"\\") {
				cfg.errs = append(cfg.errs, fmt.Errorf("verify: WithRequiredScopes: invalid scope %q", s))
				return
			}
		}
		cfg.scopes = append(cfg.scopes, scopes...)
	}
}

// WithRealm sets the realm the middlewares name in WWW-Authenticate. The
// default is the audience.
func WithRealm(realm string) Option {
	return func(cfg *config) {
		if strings.ContainsAny(realm, "\"\\\r\n") {
			cfg.errs = append(cfg.errs, fmt.Errorf("verify: WithRealm: invalid realm %q", realm))
			return
		}
		cfg.realm = realm
	}
}

// New returns a Verifier for tokens whose iss is exactly issuer and whose
// aud contains audience. It fetches issuer + "/.well-known/openid-configuration"
// (whose issuer must equal issuer exactly) and the key set at its jwks_uri
// before returning, so a misconfigured or unreachable issuer fails start-up
// rather than every request. ctx bounds only these start-up fetches; the
// background refresh runs until Close.
func New(ctx context.Context, issuer, audience string, opts ...Option) (*Verifier, error) {
	cfg := config{
		client:   &http.Client{Timeout: fetchTimeout},
		now:      time.Now,
		log:      slog.New(slog.DiscardHandler),
		leeway:   DefaultLeeway,
		algs:     slices.Clone(DefaultAlgorithms),
		interval: DefaultRefreshInterval,
		realm:    audience,

		replaySize: DefaultReplayCacheSize,
	}
	for _, o := range opts {
		o(&cfg)
	}
	if issuer == "" {
		cfg.errs = append(cfg.errs, errors.New("verify: empty issuer"))
	}
	if audience == "" {
		cfg.errs = append(cfg.errs, errors.New("verify: empty audience"))
	}
	if strings.ContainsAny(cfg.realm, "\"\\\r\n") {
		cfg.errs = append(cfg.errs, fmt.Errorf("verify: realm %q contains a quote, backslash or newline", cfg.realm))
	}
	if err := errors.Join(cfg.errs...); err != nil {
		return nil, err
	}

	jwksURL, err := discover(ctx, cfg.client, issuer)
	if err != nil {
		return nil, err
	}
	ks := &keySet{
		client:    cfg.client,
		jwksURL:   jwksURL,
		now:       cfg.now,
		log:       cfg.log,
		missEvery: cfg.interval,
		wake:      make(chan struct{}, 1),
	}
	if err := ks.refresh(ctx); err != nil {
		return nil, err
	}
	bg, cancel := context.WithCancel(context.Background())
	v := &Verifier{
		issuer:      issuer,
		audience:    audience,
		realm:       cfg.realm,
		algs:        cfg.algs,
		leeway:      cfg.leeway,
		scopes:      cfg.scopes,
		now:         cfg.now,
		keys:        ks,
		dpopBase:    cfg.dpopBase,
		replay:      dpop.NewReplayCache(cfg.replaySize),
		replayStore: cfg.replayStore,
		cancel:      cancel,
		done:        make(chan struct{}),
	}
	go func() {
		defer close(v.done)
		ks.run(bg)
	}()
	return v, nil
}

// Close stops the background key refresh and waits for it to end. Verify
// keeps working with the cached keys after Close, but they are no longer
// refreshed. Close is idempotent.
func (v *Verifier) Close() {
	v.closeOnce.Do(func() {
		v.cancel()
		<-v.done
	})
}
