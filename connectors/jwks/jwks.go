// Package jwks verifies JWS signatures against a remote JWK Set (RFC 7517)
// that it fetches and caches: an upstream's keys, a workload issuer's, or a
// client's jwks_uri. A token naming a key id the cache lacks makes it fetch
// again — but at most once per MinRefresh, so tokens with made-up key ids
// cannot make the broker hammer a key server. The cached set is also
// fetched again once it is older than MaxAge, so a withdrawn key stops
// verifying; when that refresh fails, the cached keys keep serving.
package jwks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"

	"github.com/fedbroker/fedbroker/connectors"
	"github.com/fedbroker/fedbroker/jwa"
)

// Errors of VerifySignature.
var (
	// ErrUnknownKey: no key in the set has the token's key id.
	ErrUnknownKey = errors.New("jwks: no published key with the token's key id")
	// ErrBadSignature: a key with the token's key id does not verify it.
	ErrBadSignature = errors.New("jwks: signature does not verify")
)

// Defaults for Options.
const (
	DefaultMinRefresh = 30 * time.Second
	DefaultMaxAge     = time.Hour
	// maxSetBytes caps a fetched JWK Set.
	maxSetBytes = 1 << 20
	// fetchTimeout bounds one fetch, whoever waits on it.
	fetchTimeout = 10 * time.Second
)

// Options configure a Remote.
type Options struct {
	Client *http.Client
	Now    func() time.Time
	// MinRefresh is the least time between two fetches caused by unknown
	// key ids (DefaultMinRefresh when zero).
	MinRefresh time.Duration
	// MaxAge is how long a fetched set is used before it is fetched again
	// (DefaultMaxAge when zero).
	MaxAge time.Duration
	// Algorithms are accepted (all of jwa.Asymmetric when empty); HMAC and
	// "none" never are.
	Algorithms []jose.SignatureAlgorithm
}

func (o Options) withDefaults() Options {
	if o.Client == nil {
		o.Client = &http.Client{Timeout: fetchTimeout}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MinRefresh <= 0 {
		o.MinRefresh = DefaultMinRefresh
	}
	if o.MaxAge <= 0 {
		o.MaxAge = DefaultMaxAge
	}
	if len(o.Algorithms) == 0 {
		o.Algorithms = jwa.Asymmetric[jose.SignatureAlgorithm]()
	}
	return o
}

// Remote is an oidc.KeySet over the JWK Set at one URL. It is safe for
// concurrent use; concurrent callers wait for one fetch instead of each
// starting their own.
type Remote struct {
	url  string
	opts Options

	mu      sync.Mutex
	keys    []jose.JSONWebKey
	fetched time.Time // last fetch attempt; zero before the first
	ok      time.Time // last successful fetch
	gen     uint64    // successful fetches: keys replaced
}

var _ oidc.KeySet = (*Remote)(nil)

// NewRemote returns the key set at url; nothing is fetched until it is
// used.
func NewRemote(url string, opts Options) *Remote {
	return &Remote{url: url, opts: opts.withDefaults()}
}

// VerifySignature verifies a compact JWS and returns its payload.
func (r *Remote) VerifySignature(ctx context.Context, jwt string) ([]byte, error) {
	jws, err := ParseCompact(jwt, r.opts.Algorithms)
	if err != nil {
		return nil, err
	}
	return r.VerifyJWS(ctx, jws)
}

// VerifyJWS is VerifySignature for a token the caller parsed once with
// ParseCompact, possibly with more algorithms than this key set accepts:
// a JWS signed with any other algorithm is refused.
func (r *Remote) VerifyJWS(ctx context.Context, jws *jose.JSONWebSignature) ([]byte, error) {
	if err := checkParsed(jws, r.opts.Algorithms); err != nil {
		return nil, err
	}
	kid := jws.Signatures[0].Header.KeyID

	// The signature is checked without r.mu held, against the keys as
	// they were (r.keys is replaced, never changed in place), so that
	// concurrent sign-ins verify in parallel; only fetches are serialized.
	r.mu.Lock()
	now := r.opts.Now()
	if !r.ok.IsZero() && now.Sub(r.ok) > r.opts.MaxAge && now.Sub(r.fetched) >= r.opts.MinRefresh {
		r.refresh(ctx, now)
	}
	keys, gen := r.keys, r.gen
	r.mu.Unlock()
	if payload, found, err := verifyWith(jws, keys, kid); found {
		return payload, err
	}

	r.mu.Lock()
	if r.gen == gen {
		// No one fetched the set meanwhile: fetch it, unless it was
		// fetched (or tried) too recently.
		if !r.fetched.IsZero() && now.Sub(r.fetched) < r.opts.MinRefresh {
			r.mu.Unlock()
			return nil, ErrUnknownKey
		}
		if err := r.refresh(ctx, now); err != nil && r.ok.IsZero() {
			r.mu.Unlock()
			return nil, err
		}
	}
	keys = r.keys
	r.mu.Unlock()
	if payload, found, err := verifyWith(jws, keys, kid); found {
		return payload, err
	}
	return nil, ErrUnknownKey
}

// refresh fetches the set; r.mu is held. A failed fetch keeps the keys
// fetched before.
func (r *Remote) refresh(ctx context.Context, now time.Time) error {
	r.fetched = now
	keys, err := r.fetch(ctx)
	if err != nil {
		return err
	}
	r.keys, r.ok = keys, now
	r.gen++
	return nil
}

// ParseCompact parses a compact JWS in canonical form (jwa.CheckCompact)
// signed with one of algs, with exactly one signature and a header
// jwa.CheckHeader accepts (no zip, crit or b64). It verifies nothing. Its
// refusals of the form and the header wrap jwa.ErrEncoding and
// jwa.ErrHeader.
func ParseCompact(token string, algs []jose.SignatureAlgorithm) (*jose.JSONWebSignature, error) {
	if err := jwa.CheckCompact(token); err != nil {
		return nil, fmt.Errorf("jwks: %w", err)
	}
	jws, err := jose.ParseSignedCompact(token, algs)
	if err != nil {
		return nil, fmt.Errorf("jwks: parse jws: %w", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, errors.New("jwks: want exactly one signature")
	}
	if err := jwa.CheckHeader(jws.Signatures[0].Header.ExtraHeaders); err != nil {
		return nil, fmt.Errorf("jwks: %w", err)
	}
	return jws, nil
}

// checkParsed refuses a parsed JWS that ParseCompact with algs would
// have refused for its algorithm, or that does not carry one signature.
func checkParsed(jws *jose.JSONWebSignature, algs []jose.SignatureAlgorithm) error {
	if jws == nil || len(jws.Signatures) != 1 {
		return errors.New("jwks: want exactly one signature")
	}
	if alg := jws.Signatures[0].Header.Algorithm; !slices.Contains(algs, jose.SignatureAlgorithm(alg)) {
		return fmt.Errorf("jwks: parse jws: algorithm %q is not accepted", alg)
	}
	return nil
}

// verifyWith verifies jws with the key whose id is kid (any key when kid is
// empty). found reports whether a candidate key existed.
func verifyWith(jws *jose.JSONWebSignature, keys []jose.JSONWebKey, kid string) (payload []byte, found bool, err error) {
	for i := range keys {
		if kid != "" && keys[i].KeyID != kid {
			continue
		}
		found = true
		if p, err := jws.Verify(&keys[i]); err == nil {
			return p, true, nil
		}
	}
	if found {
		return nil, true, ErrBadSignature
	}
	return nil, false, nil
}

// fetch downloads the set. The fetch serves every caller waiting on r.mu,
// so one caller going away does not cancel it; it has its own timeout.
func (r *Remote) fetch(ctx context.Context) ([]jose.JSONWebKey, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.url, nil)
	if err != nil {
		return nil, fmt.Errorf("jwks: request: %w", err)
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := r.opts.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("jwks: fetch: %w: %w", connectors.ErrUnavailable, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxSetBytes+1))
	if err != nil {
		return nil, fmt.Errorf("jwks: read: %w: %w", connectors.ErrUnavailable, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("jwks: fetch: %w: status %d", connectors.ErrUnavailable, resp.StatusCode)
	}
	if len(body) > maxSetBytes {
		return nil, errors.New("jwks: the key set is larger than 1 MiB")
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("jwks: decode: %w", err)
	}
	keys := set.Keys[:0]
	for _, k := range set.Keys {
		// Public signing keys only: a symmetric or private key in a
		// published set is never used to verify.
		if k.IsPublic() && k.Valid() && (k.Use == "" || k.Use == "sig") {
			keys = append(keys, k)
		}
	}
	return keys, nil
}

// Cache shares one Remote per URL, so a configuration reload does not
// fetch again what the previous configuration had (clients' jwks_uri).
type Cache struct {
	opts Options
	mu   sync.Mutex
	sets map[string]*Remote
}

// NewCache returns an empty cache whose Remotes use opts.
func NewCache(opts Options) *Cache {
	return &Cache{opts: opts.withDefaults(), sets: make(map[string]*Remote)}
}

// KeySet returns the Remote for url.
func (c *Cache) KeySet(url string) *Remote {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.sets[url]
	if !ok {
		r = NewRemote(url, c.opts)
		c.sets[url] = r
	}
	return r
}

// Static is an oidc.KeySet over a fixed JWK Set (a file, or a client's
// inline jwks).
type Static struct {
	keys []jose.JSONWebKey
	algs []jose.SignatureAlgorithm
}

var _ oidc.KeySet = (*Static)(nil)

// ParseStatic parses a JWK Set (JSON) into a key set of its public signing
// keys; private, symmetric and encryption keys are left out. algs are the
// accepted algorithms (all of jwa.Asymmetric when empty).
func ParseStatic(data []byte, algs []jose.SignatureAlgorithm) (*Static, error) {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("not a JWK Set: %w", err)
	}
	var keys []jose.JSONWebKey
	for _, k := range set.Keys {
		if k.IsPublic() && k.Valid() && k.Use != "enc" {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil, errors.New("no public signing key")
	}
	if len(algs) == 0 {
		algs = jwa.Asymmetric[jose.SignatureAlgorithm]()
	}
	return &Static{keys: keys, algs: algs}, nil
}

// VerifySignature verifies a compact JWS and returns its payload.
func (s *Static) VerifySignature(ctx context.Context, jwt string) ([]byte, error) {
	jws, err := ParseCompact(jwt, s.algs)
	if err != nil {
		return nil, err
	}
	return s.VerifyJWS(ctx, jws)
}

// VerifyJWS is Remote.VerifyJWS for the fixed set.
func (s *Static) VerifyJWS(_ context.Context, jws *jose.JSONWebSignature) ([]byte, error) {
	if err := checkParsed(jws, s.algs); err != nil {
		return nil, err
	}
	if payload, found, err := verifyWith(jws, s.keys, jws.Signatures[0].Header.KeyID); found {
		return payload, err
	}
	return nil, ErrUnknownKey
}
