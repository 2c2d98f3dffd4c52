package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"

	"github.com/fedbroker/fedbroker/jwa"
)

// KeySets fetches and caches the JWK Sets behind clients' jwks_uri. One
// instance serves every configuration the broker loads, so a reload does
// not refetch what it has. A set is fetched again when it is older than
// MaxAge, or when a token names a key id the set lacks — but at most once
// per MinRefresh per URL, so a caller presenting made-up key ids cannot make
// the broker hammer a client's key server.
type KeySets struct {
	client *http.Client
	now    func() time.Time

	// MinRefresh is the least time between two fetches of one set.
	MinRefresh time.Duration
	// MaxAge is how long a fetched set is used before it is fetched again.
	MaxAge time.Duration

	mu   sync.Mutex
	sets map[string]*remoteKeySet
}

// maxJWKSBytes caps a fetched JWK Set.
const maxJWKSBytes = 1 << 20

// NewKeySets returns an empty cache fetching with client.
func NewKeySets(client *http.Client, now func() time.Time) *KeySets {
	return &KeySets{client: client, now: now, MinRefresh: 30 * time.Second, MaxAge: 10 * time.Minute, sets: make(map[string]*remoteKeySet)}
}

// KeySet returns the key set at uri; nothing is fetched until it is used.
func (k *KeySets) KeySet(uri string) oidc.KeySet {
	k.mu.Lock()
	defer k.mu.Unlock()
	s, ok := k.sets[uri]
	if !ok {
		s = &remoteKeySet{owner: k, uri: uri}
		k.sets[uri] = s
	}
	return s
}

// remoteKeySet is one cached JWK Set.
type remoteKeySet struct {
	owner *KeySets
	uri   string

	mu      sync.Mutex
	keys    []jose.JSONWebKey
	fetched time.Time // last fetch attempt
	ok      time.Time // last successful fetch
}

var errNoKey = errors.New("runtime: no key in the client's JWK Set verifies the signature")

// VerifySignature verifies a compact JWS against the set (oidc.KeySet).
func (s *remoteKeySet) VerifySignature(ctx context.Context, raw string) ([]byte, error) {
	jws, err := jose.ParseSignedCompact(raw, jwa.Asymmetric())
	if err != nil {
		return nil, fmt.Errorf("runtime: malformed jws: %w", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, errors.New("runtime: want exactly one signature")
	}
	kid := jws.Signatures[0].Header.KeyID
	keys, err := s.keysFor(ctx, kid)
	if err != nil {
		return nil, err
	}
	for _, k := range keys {
		if kid != "" && k.KeyID != kid {
			continue
		}
		if payload, err := jws.Verify(k.Key); err == nil {
			return payload, nil
		}
	}
	return nil, errNoKey
}

// keysFor returns the cached keys, fetching first when the set is stale or
// lacks kid and the last fetch was long enough ago.
func (s *remoteKeySet) keysFor(ctx context.Context, kid string) ([]jose.JSONWebKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.owner.now()
	stale := s.ok.IsZero() || now.Sub(s.ok) > s.owner.MaxAge
	missing := kid != "" && !hasKID(s.keys, kid)
	if (stale || missing) && (s.fetched.IsZero() || now.Sub(s.fetched) >= s.owner.MinRefresh) {
		s.fetched = now
		keys, err := s.fetch(ctx)
		switch {
		case err == nil:
			s.keys, s.ok = keys, now
		case s.ok.IsZero():
			return nil, err
		}
		// A failed refresh keeps serving the keys fetched before.
	}
	if s.ok.IsZero() {
		return nil, errors.New("runtime: the client's JWK Set could not be fetched yet")
	}
	return s.keys, nil
}

func (s *remoteKeySet) fetch(ctx context.Context) ([]jose.JSONWebKey, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.uri, nil)
	if err != nil {
		return nil, fmt.Errorf("runtime: jwks_uri: %w", err)
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := s.owner.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("runtime: fetch jwks_uri: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("runtime: fetch jwks_uri: status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, fmt.Errorf("runtime: fetch jwks_uri: %w", err)
	}
	if len(body) > maxJWKSBytes {
		return nil, errors.New("runtime: jwks_uri answered more than 1 MiB")
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("runtime: jwks_uri: %w", err)
	}
	var keys []jose.JSONWebKey
	for _, k := range set.Keys {
		if k.IsPublic() && k.Valid() && (k.Use == "" || k.Use == "sig") {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil, errors.New("runtime: jwks_uri has no public signing key")
	}
	return keys, nil
}

func hasKID(keys []jose.JSONWebKey, kid string) bool {
	for _, k := range keys {
		if k.KeyID == kid {
			return true
		}
	}
	return false
}
