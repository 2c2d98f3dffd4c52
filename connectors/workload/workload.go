// Package workload verifies tokens that trusted external issuers (GitHub
// Actions, Kubernetes service-account issuers, cloud workload identities,
// another fedbroker) give their workloads, for token exchange. It is a
// connectors.TokenVerifier: it turns a presented JWT into an Identity, or
// refuses it.
package workload

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/fedbroker/fedbroker/connectors"
	"github.com/fedbroker/fedbroker/connectors/jwks"
	"github.com/fedbroker/fedbroker/jwa"
	"github.com/fedbroker/fedbroker/problem"
)

// Config is one trusted workload issuer.
type Config struct {
	// Issuer is the exact `iss` of accepted tokens.
	Issuer string `yaml:"issuer"`
	// Audiences are the `aud` values accepted; a token must carry one.
	Audiences []string `yaml:"audiences"`
	// JWKSFile is a static JWKS (clusters without public discovery). When
	// empty the keys come from the issuer's OpenID discovery document.
	JWKSFile string `yaml:"jwks_file"`
	// JWKSURL fetches keys from this URL instead of discovery.
	JWKSURL string `yaml:"jwks_url"`
	// Algorithms allowed; default RS256 and ES256. HMAC and none are never
	// accepted.
	Algorithms []string `yaml:"algorithms"`
	// OneTimeJTI makes the broker accept each token's jti once (the token
	// must then carry a jti).
	OneTimeJTI bool `yaml:"one_time_jti"`
	// MaxLifetime bounds a token's life (default 24h): exp - iat when it
	// has an iat, and exp - now (plus the clock skew) in any case, so a
	// token without iat is bounded too.
	MaxLifetime time.Duration `yaml:"max_lifetime"`
	// SubjectClaim names the claim that identifies the workload (default sub).
	SubjectClaim string `yaml:"subject_claim"`
}

// Validate returns every problem with its path relative to the workload.
func (c *Config) Validate() []problem.Problem {
	var errs []problem.Problem
	add := func(path, msg string) { errs = append(errs, problem.Problem{Path: path, Message: msg}) }
	if c.Issuer == "" {
		add("issuer", "required")
	} else if u, err := url.Parse(c.Issuer); err != nil || !u.IsAbs() || u.Host == "" {
		add("issuer", "must be an absolute URL")
	}
	if len(c.Audiences) == 0 {
		add("audiences", "at least one accepted audience is required")
	}
	for i, a := range c.Audiences {
		if strings.TrimSpace(a) == "" {
			add(fmt.Sprintf("audiences[%d]", i), "empty")
		}
	}
	if c.JWKSFile != "" && c.JWKSURL != "" {
		add("jwks_file", "give jwks_file or jwks_url, not both")
	}
	if c.JWKSURL != "" {
		if u, err := url.Parse(c.JWKSURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") {
			add("jwks_url", "must be an http(s) URL")
		}
	}
	for i, a := range c.Algorithms {
		if !jwa.IsAsymmetric(a) {
			add(fmt.Sprintf("algorithms[%d]", i), fmt.Sprintf("%q is not an asymmetric signing algorithm", a))
		}
	}
	if c.MaxLifetime < 0 {
		add("max_lifetime", "must be positive")
	}
	return errs
}

// Verifier verifies one issuer's workload tokens.
type Verifier struct {
	cfg Config
	// keys verify the signature, accepting only cfg.Algorithms.
	keys oidc.KeySet
	now  func() time.Time
}

// clockSkew is the leeway on nbf and iat (the issuer's clock may run
// ahead) and on the exp - now bound; exp itself has none.
const clockSkew = time.Minute

var _ connectors.TokenVerifier = (*Verifier)(nil)

// Open builds the verifier: keys from the static file, the given JWKS URL,
// or discovery (whose issuer must match).
func (c *Config) Open(ctx context.Context, id string, opts connectors.Options) (*Verifier, error) {
	cfg := *c
	if len(cfg.Algorithms) == 0 {
		cfg.Algorithms = []string{"RS256", "ES256"}
	}
	if cfg.MaxLifetime == 0 {
		cfg.MaxLifetime = 24 * time.Hour
	}
	if cfg.SubjectClaim == "" {
		cfg.SubjectClaim = "sub"
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	client := opts.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	var keys oidc.KeySet
	algs := make([]jose.SignatureAlgorithm, len(cfg.Algorithms))
	for i, a := range cfg.Algorithms {
		algs[i] = jose.SignatureAlgorithm(a)
	}
	keyOpts := jwks.Options{Client: client, Now: now, Algorithms: algs}
	switch {
	case cfg.JWKSFile != "":
		b, err := os.ReadFile(cfg.JWKSFile)
		if err != nil {
			return nil, fmt.Errorf("workload %s: jwks_file: %w", id, err)
		}
		if keys, err = jwks.ParseStatic(b, algs); err != nil {
			return nil, fmt.Errorf("workload %s: jwks_file: %w", id, err)
		}
	case cfg.JWKSURL != "":
		keys = jwks.NewRemote(cfg.JWKSURL, keyOpts)
	default:
		p, err := oidc.NewProvider(oidc.ClientContext(ctx, client), cfg.Issuer)
		if err != nil {
			return nil, fmt.Errorf("workload %s: discovery: %w: %w", id, connectors.ErrUnavailable, err)
		}
		var meta struct {
			JWKS string `json:"jwks_uri"`
		}
		if err := p.Claims(&meta); err != nil || meta.JWKS == "" {
			return nil, fmt.Errorf("workload %s: discovery has no jwks_uri", id)
		}
		keys = jwks.NewRemote(meta.JWKS, keyOpts)
	}
	return &Verifier{cfg: cfg, keys: keys, now: now}, nil
}

// Errors callers branch on (all wrapped in connectors.UserError for the
// token endpoint's error description).
var (
	ErrUntrusted    = errors.New("workload: token not from this issuer or not validly signed")
	ErrAudience     = errors.New("workload: token audience not accepted")
	ErrLifetime     = errors.New("workload: token lifetime too long")
	ErrMissingJTI   = errors.New("workload: token has no jti")
	ErrMissingClaim = errors.New("workload: token lacks the subject claim")
	// ErrClaims: the payload is not a JSON object (always with
	// ErrUntrusted).
	ErrClaims = errors.New("workload: token claims are not a JSON object")
)

// OneTimeJTI reports whether each token's jti may be used once only.
func (v *Verifier) OneTimeJTI() bool { return v.cfg.OneTimeJTI }

// Issuer is the trusted issuer.
func (v *Verifier) Issuer() string { return v.cfg.Issuer }

// maxTokenBytes caps a presented token.
const maxTokenBytes = 16 << 10

// Subject is a presented token parsed once: its compact JWS form and
// header checked (jwks.ParseCompact with every asymmetric algorithm) and
// its payload decoded. Nothing in it is verified: Issuer serves only to
// choose the issuer that verifies it (VerifySubject).
type Subject struct {
	jws     *jose.JSONWebSignature
	payload []byte
	claims  map[string]any
}

// ParseSubject parses token for VerifySubject. A token that is too large,
// not a compact JWS with one signature of an asymmetric algorithm, or has
// a zip, crit or b64 header is refused with ErrUntrusted; one whose
// payload is not a JSON object also with ErrClaims.
func ParseSubject(token string) (*Subject, error) {
	if len(token) > maxTokenBytes {
		return nil, ErrUntrusted
	}
	jws, err := jwks.ParseCompact(token, jwa.Asymmetric[jose.SignatureAlgorithm]())
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUntrusted, err)
	}
	s := &Subject{jws: jws, payload: jws.UnsafePayloadWithoutVerification()}
	if err := json.Unmarshal(s.payload, &s.claims); err != nil || s.claims == nil {
		return nil, fmt.Errorf("%w: %w: %v", ErrUntrusted, ErrClaims, err)
	}
	return s, nil
}

// Issuer is the token's iss, unverified ("" when it is not a string).
func (s *Subject) Issuer() string {
	iss, _ := s.claims["iss"].(string)
	return iss
}

// jwsVerifier is a key set that verifies a JWS already parsed
// (jwks.Remote and jwks.Static), so the token is not parsed again.
type jwsVerifier interface {
	VerifyJWS(ctx context.Context, jws *jose.JSONWebSignature) ([]byte, error)
}

// VerifyToken checks signature (allowed algorithms only, no zip, crit or
// b64 header), iss, exp, nbf, that iat is not in the future, an accepted
// audience and a bounded lifetime, and returns the workload's
// identity with all its claims. Identity.Claims["jti"] and ["exp"] are kept
// so the broker can enforce one-time use.
func (v *Verifier) VerifyToken(ctx context.Context, token string) (connectors.Identity, error) {
	s, err := ParseSubject(token)
	if err != nil {
		return connectors.Identity{}, err
	}
	return v.VerifySubject(ctx, s)
}

// VerifySubject is VerifyToken for a token parsed by ParseSubject: the
// signature is verified on the parsed JWS and the claims decoded there
// are used, not decoded again.
func (v *Verifier) VerifySubject(ctx context.Context, s *Subject) (connectors.Identity, error) {
	var payload []byte
	var err error
	if kv, ok := v.keys.(jwsVerifier); ok {
		payload, err = kv.VerifyJWS(ctx, s.jws)
	} else {
		var token string
		if token, err = s.jws.CompactSerialize(); err == nil {
			payload, err = v.keys.VerifySignature(ctx, token)
		}
	}
	if err != nil {
		return connectors.Identity{}, fmt.Errorf("%w: %v", ErrUntrusted, err)
	}
	if !bytes.Equal(payload, s.payload) {
		// Never: go-jose verifies the payload it parsed.
		return connectors.Identity{}, fmt.Errorf("%w: verified payload differs from the parsed one", ErrUntrusted)
	}
	claims := s.claims
	var std jwt.Claims
	if err := json.Unmarshal(payload, &std); err != nil {
		return connectors.Identity{}, fmt.Errorf("%w: claims: %v", ErrUntrusted, err)
	}
	now := v.now()
	switch {
	case std.Issuer != v.cfg.Issuer:
		return connectors.Identity{}, fmt.Errorf("%w: issuer %q", ErrUntrusted, std.Issuer)
	case std.Expiry == nil:
		return connectors.Identity{}, fmt.Errorf("%w: no exp", ErrUntrusted)
	case !now.Before(std.Expiry.Time()):
		return connectors.Identity{}, fmt.Errorf("workload: token expired at %s: %w", std.Expiry.Time().UTC().Format(time.RFC3339), ErrUntrusted)
	case std.NotBefore != nil && now.Add(clockSkew).Before(std.NotBefore.Time()):
		return connectors.Identity{}, fmt.Errorf("%w: not valid before %s", ErrUntrusted, std.NotBefore.Time().UTC().Format(time.RFC3339))
	case std.IssuedAt != nil && now.Add(clockSkew).Before(std.IssuedAt.Time()):
		return connectors.Identity{}, fmt.Errorf("%w: issued in the future (iat %s)", ErrUntrusted, std.IssuedAt.Time().UTC().Format(time.RFC3339))
	}
	if !slices.ContainsFunc(std.Audience, func(a string) bool { return slices.Contains(v.cfg.Audiences, a) }) {
		return connectors.Identity{}, ErrAudience
	}
	if std.Expiry.Time().Sub(now) > v.cfg.MaxLifetime+clockSkew {
		return connectors.Identity{}, fmt.Errorf("%w: expires %s, more than %s ahead", ErrLifetime, std.Expiry.Time().UTC().Format(time.RFC3339), v.cfg.MaxLifetime)
	}
	if std.IssuedAt != nil && std.Expiry.Time().Sub(std.IssuedAt.Time()) > v.cfg.MaxLifetime {
		return connectors.Identity{}, ErrLifetime
	}
	if v.cfg.OneTimeJTI {
		if jti, _ := claims["jti"].(string); jti == "" {
			return connectors.Identity{}, ErrMissingJTI
		}
	}
	sub, _ := claims[v.cfg.SubjectClaim].(string)
	if sub == "" {
		return connectors.Identity{}, ErrMissingClaim
	}
	return connectors.Identity{Subject: sub, Claims: claims}, nil
}
