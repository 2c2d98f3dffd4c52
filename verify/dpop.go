package verify

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/fedbroker/fedbroker/dpop"
)

// DefaultReplayCacheSize is how many DPoP proof identifiers a Verifier
// remembers unless WithDPoPReplayCache says otherwise: enough for about
// 1,000 requests a second within the proofs' validity window.
const DefaultReplayCacheSize = 128 << 10

// WithDPoPBaseURL sets the public base URL of the service, such as
// "https://api.example.com", for services behind a proxy: the middlewares
// check a DPoP proof's htu against it followed by the request's path. The
// default is the URL the request reached: https when it came over TLS,
// else http, the Host header and the path.
func WithDPoPBaseURL(base string) Option {
	return func(cfg *config) {
		u, err := url.Parse(base)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" ||
			u.User != nil || u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(base, "?") {
			cfg.errs = append(cfg.errs, fmt.Errorf("verify: WithDPoPBaseURL: %q is not an absolute http or https URL without query", base))
			return
		}
		cfg.dpopBase = strings.TrimSuffix(base, "/")
	}
}

// WithDPoPReplayCache sets how many DPoP proof identifiers the Verifier
// remembers to refuse a replayed proof. When it is full, the identifier
// expiring soonest is forgotten. The default is DefaultReplayCacheSize.
// The cache lives in memory: replicas behind one URL do not share it;
// WithReplayStore gives them one store instead.
func WithDPoPReplayCache(size int) Option {
	return func(cfg *config) {
		if size < 1 {
			cfg.errs = append(cfg.errs, fmt.Errorf("verify: WithDPoPReplayCache: size %d is less than 1", size))
			return
		}
		cfg.replaySize = size
	}
}

// VerifyDPoP checks a DPoP-bound access token presented with a DPoP proof
// (RFC 9449 §7.1), for a request of method to url, the absolute URL as
// the service publishes it. It makes every check of Verify, then requires
// the token to carry cnf.jkt (else ErrNotDPoPBound) and the proof to pass
// dpop.Verify for method, url and token (ath), to be signed by the key
// cnf.jkt names, and never to have been presented before (else
// ErrInvalidDPoPProof).
func (v *Verifier) VerifyDPoP(ctx context.Context, token, proof, method, url string) (*Claims, error) {
	claims, err := v.verifyToken(ctx, token)
	if err != nil {
		return nil, err
	}
	if claims.KeyThumbprint == "" {
		return nil, ErrNotDPoPBound
	}
	now := v.now()
	p, err := dpop.Verify(proof, dpop.Check{Method: method, URL: url, Now: now, AccessToken: token})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidDPoPProof, err)
	}
	if subtle.ConstantTimeCompare([]byte(p.Thumbprint), []byte(claims.KeyThumbprint)) != 1 {
		return nil, fmt.Errorf("%w: %w", ErrInvalidDPoPProof, errWrongKey)
	}
	// The proof stops passing when its iat falls out of the skew, by the
	// Verifier's clock; the cache counts on the wall clock.
	left := p.IssuedAt.Add(dpop.DefaultSkew).Sub(now) + time.Second
	switch used, err := v.seen(ctx, "dpop", p.Thumbprint+" "+p.JTI, left); {
	case err != nil:
		return nil, err
	case used:
		return nil, fmt.Errorf("%w: %w", ErrInvalidDPoPProof, errReplayed)
	}
	if err := claims.RequireScopes(v.scopes...); err != nil {
		return nil, err
	}
	return claims, nil
}

var (
	errWrongKey    = errors.New("the proof is not signed by the key the token is bound to")
	errReplayed    = errors.New("the proof was used before")
	errProofCount  = errors.New("exactly one DPoP header is required")
	dpopAlgorithms = strings.Join(dpop.DefaultAlgorithms, " ")
)

// verifyDPoPRequest checks the request's one DPoP header against token.
func (v *Verifier) verifyDPoPRequest(ctx context.Context, r *http.Request, token string) (*Claims, error) {
	proofs := r.Header.Values(dpop.Header)
	if len(proofs) != 1 {
		if _, err := v.verifyToken(ctx, token); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %w", ErrInvalidDPoPProof, errProofCount)
	}
	return v.VerifyDPoP(ctx, token, proofs[0], r.Method, v.requestURL(r))
}

// requestURL is the URL a proof's htu must name for r.
func (v *Verifier) requestURL(r *http.Request) string {
	base := v.dpopBase
	if base == "" {
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		base = scheme + "://" + r.Host
	}
	return base + r.URL.EscapedPath()
}

// dpopDescription names the class of a DPoP proof failure without echoing
// the proof.
func dpopDescription(err error) string {
	switch {
	case errors.Is(err, errProofCount):
		return "exactly one DPoP proof is required"
	case errors.Is(err, errWrongKey):
		return "the DPoP proof is not signed by the token's key"
	case errors.Is(err, errReplayed):
		return "the DPoP proof was already used"
	default:
		return "the DPoP proof is invalid"
	}
}
