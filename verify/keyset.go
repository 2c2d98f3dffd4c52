package verify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

const (
	maxDocumentSize  = 1 << 20 // discovery document and JWKS
	fetchTimeout     = 30 * time.Second
	defaultMaxAge    = 5 * time.Minute
	minMaxAge        = 10 * time.Second
	maxMaxAge        = 24 * time.Hour
	minRetryBackoff  = 5 * time.Second
	maxRetryBackoff  = 5 * time.Minute
	refreshFraction  = 4 // refresh when 3/4 of max-age has passed
	refreshNumerator = 3
)

// discover fetches the OpenID discovery document of issuer and returns its
// jwks_uri. The document's issuer must equal issuer exactly.
func discover(ctx context.Context, client *http.Client, issuer string) (string, error) {
	u := strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"
	body, _, err := get(ctx, client, u)
	if err != nil {
		return "", fmt.Errorf("verify: discovery: %w", err)
	}
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return "", fmt.Errorf("verify: discovery: decode %s: %w", u, err)
	}
	if doc.Issuer != issuer {
		return "", fmt.Errorf("verify: discovery: issuer %q in %s does not equal configured issuer %q", doc.Issuer, u, issuer)
	}
	ju, err := url.Parse(doc.JWKSURI)
	if err != nil || !ju.IsAbs() || ju.Host == "" {
		return "", fmt.Errorf("verify: discovery: %s has no absolute jwks_uri (%q)", u, doc.JWKSURI)
	}
	if iu, err := url.Parse(issuer); err == nil && iu.Scheme == "https" && ju.Scheme != "https" {
		return "", fmt.Errorf("verify: discovery: jwks_uri %q is not https for https issuer", doc.JWKSURI)
	}
	return doc.JWKSURI, nil
}

// get fetches u and returns its body (at most maxDocumentSize bytes) and
// response headers; any status but 200 is an error.
func get(ctx context.Context, client *http.Client, u string) ([]byte, http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDocumentSize+1))
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("get %s: status %s", u, resp.Status)
	}
	if len(body) > maxDocumentSize {
		return nil, nil, fmt.Errorf("get %s: body larger than %d bytes", u, maxDocumentSize)
	}
	return body, resp.Header, nil
}

// maxAge returns the max-age of a Cache-Control header, clamped to
// [minMaxAge, maxMaxAge], or defaultMaxAge when there is none. no-store and
// no-cache give the minimum.
func maxAge(h http.Header) time.Duration {
	age := time.Duration(-1)
	for _, v := range h.Values("Cache-Control") {
		for _, d := range strings.Split(v, ",") {
			d = strings.ToLower(strings.TrimSpace(d))
			switch {
			case d == "no-store" || d == "no-cache":
				return minMaxAge
			case strings.HasPrefix(d, "max-age="):
				n, err := strconv.ParseInt(strings.Trim(strings.TrimPrefix(d, "max-age="), `"`), 10, 64)
				if err == nil && n >= 0 {
					age = time.Duration(min(n, int64(maxMaxAge/time.Second))) * time.Second
				}
			}
		}
	}
	if age < 0 {
		return defaultMaxAge
	}
	return min(max(age, minMaxAge), maxMaxAge)
}

// keySet is the cached public key set of the issuer. All methods are safe
// for concurrent use. Keys are replaced only by a successful fetch that
// yields at least one usable key, so an unreachable or misbehaving issuer
// leaves the last good set in place.
type keySet struct {
	client    *http.Client
	jwksURL   string
	now       func() time.Time
	log       *slog.Logger
	missEvery time.Duration // minimum interval between kid-miss refreshes
	wake      chan struct{} // pokes the background loop; buffered 1

	mu          sync.RWMutex
	keys        []jose.JSONWebKey
	nextRefresh time.Time // when the background loop should fetch
	lastMiss    time.Time // last kid-miss refresh
	failures    int       // consecutive failed fetches
	inflight    *fetchCall
	fetches     int // fetch attempts, for tests and logs
}

type fetchCall struct {
	done chan struct{}
	err  error
}

// lookup returns the keys matching kid (every key when kid is empty) and
// pokes the background loop when the cache is due for refresh.
func (s *keySet) lookup(kid string) []jose.JSONWebKey {
	s.mu.RLock()
	var out []jose.JSONWebKey
	for i := range s.keys {
		if kid == "" || s.keys[i].KeyID == kid {
			out = append(out, s.keys[i])
		}
	}
	due := !s.now().Before(s.nextRefresh)
	s.mu.RUnlock()
	if due {
		s.poke()
	}
	return out
}

func (s *keySet) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// refreshForMiss is called when a token names key ID kid that the cache
// lacks. It joins a fetch already in flight (which may bring the key), and
// otherwise fetches, at most once per missEvery across all callers. It
// reports whether kid is now in the cache.
func (s *keySet) refreshForMiss(ctx context.Context, kid string) bool {
	for range 3 {
		s.mu.Lock()
		if s.hasLocked(kid) {
			s.mu.Unlock()
			return true
		}
		if c := s.inflight; c != nil {
			s.mu.Unlock()
			select {
			case <-c.done:
				continue
			case <-ctx.Done():
				return false
			}
		}
		now := s.now()
		if !s.lastMiss.IsZero() && now.Sub(s.lastMiss) < s.missEvery {
			s.mu.Unlock()
			return false
		}
		s.lastMiss = now
		c := s.beginLocked()
		s.mu.Unlock()
		// The fetch serves every caller waiting on it: one caller going
		// away must not cancel it (it has its own timeout).
		s.finish(context.WithoutCancel(ctx), c)
		s.mu.RLock()
		defer s.mu.RUnlock()
		return s.hasLocked(kid)
	}
	return false
}

func (s *keySet) hasLocked(kid string) bool {
	for i := range s.keys {
		if s.keys[i].KeyID == kid {
			return true
		}
	}
	return false
}

// refresh fetches the key set, or waits for a fetch already in flight.
func (s *keySet) refresh(ctx context.Context) error {
	s.mu.Lock()
	if c := s.inflight; c != nil {
		s.mu.Unlock()
		select {
		case <-c.done:
			return c.err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	c := s.beginLocked()
	s.mu.Unlock()
	return s.finish(ctx, c)
}

// beginLocked registers a fetch in flight; s.mu must be held.
func (s *keySet) beginLocked() *fetchCall {
	c := &fetchCall{done: make(chan struct{})}
	s.inflight = c
	s.fetches++
	return c
}

// finish performs the fetch registered as c, installs its result or
// schedules a retry with backoff, and releases the callers waiting on c.
func (s *keySet) finish(ctx context.Context, c *fetchCall) error {
	keys, age, err := s.fetch(ctx)

	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if err != nil {
		s.failures++
		backoff := min(minRetryBackoff<<min(s.failures-1, 10), maxRetryBackoff)
		s.nextRefresh = now.Add(backoff)
		s.log.Warn("verify: key set refresh failed; keeping the last good keys",
			"jwks_uri", s.jwksURL, "failures", s.failures, "retry_in", backoff, "error", err)
	} else {
		s.failures = 0
		s.keys = keys
		s.nextRefresh = now.Add(age * refreshNumerator / refreshFraction)
		s.log.Debug("verify: key set refreshed", "jwks_uri", s.jwksURL, "keys", len(keys), "max_age", age)
	}
	s.inflight = nil
	c.err = err
	close(c.done)
	return err
}

// fetch downloads and filters the key set. Only public signing keys are
// kept: symmetric keys, private keys and encryption keys are dropped, so
// no token can be checked with an HMAC keyed by public material.
func (s *keySet) fetch(ctx context.Context) ([]jose.JSONWebKey, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	body, h, err := get(ctx, s.client, s.jwksURL)
	if err != nil {
		return nil, 0, fmt.Errorf("verify: fetch keys: %w", err)
	}
	var raw struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, 0, fmt.Errorf("verify: decode keys from %s: %w", s.jwksURL, err)
	}
	var keys []jose.JSONWebKey
	for i, r := range raw.Keys {
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(r); err != nil {
			s.log.Warn("verify: skipping undecodable key", "jwks_uri", s.jwksURL, "index", i, "error", err)
			continue
		}
		if !k.Valid() || !k.IsPublic() || (k.Use != "" && k.Use != "sig") {
			s.log.Warn("verify: skipping key that is not a public signing key", "jwks_uri", s.jwksURL, "kid", k.KeyID)
			continue
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, 0, errors.New("verify: key set from " + s.jwksURL + " has no usable public signing key")
	}
	return keys, maxAge(h), nil
}

// run refreshes the key set before its max-age runs out until ctx is done.
// Timers run on wall time; whether a refresh is due is decided by the
// injected clock, and lookup pokes the loop when that clock says so.
func (s *keySet) run(ctx context.Context) {
	for {
		s.mu.RLock()
		wait := s.nextRefresh.Sub(s.now())
		s.mu.RUnlock()
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-s.wake:
				t.Stop()
				continue // re-evaluate against the clock
			case <-t.C:
			}
		}
		select {
		case <-ctx.Done():
			return
		default:
		}
		_ = s.refresh(ctx) // failures are logged and rescheduled by refresh
	}
}

// fetchCount returns the number of fetch attempts so far.
func (s *keySet) fetchCount() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.fetches
}
