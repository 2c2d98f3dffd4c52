package oidc

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
	"github.com/go-jose/go-jose/v4"

	"github.com/fedbroker/fedbroker/connectors"
)

// Errors of keySet.VerifySignature.
var (
	errUnknownKey   = errors.New("oidc: no published key with the token's key id")
	errBadSignature = errors.New("oidc: signature does not verify")
)

// keyMaxAge is how long cached keys are used before the JWKS is fetched
// again, so that a key the upstream withdrew stops verifying.
const keyMaxAge = time.Hour

// keySet is an oidc.KeySet over the upstream JWKS. Unlike go-oidc's
// RemoteKeySet, which fetches the JWKS for every token with an unknown key
// id, it refetches at most once per minInterval, so forged tokens with
// random key ids cannot make the broker hammer the upstream. A token with a
// known key id is verified from the cache.
type keySet struct {
	url         string
	client      *http.Client
	now         func() time.Time
	minInterval time.Duration
	algs        []jose.SignatureAlgorithm

	mu      sync.Mutex
	keys    []jose.JSONWebKey
	fetched time.Time // zero before the first fetch
}

var _ oidc.KeySet = (*keySet)(nil)

// VerifySignature verifies jwt against the cached keys, refreshing them once
// (rate-limited) when no cached key has the token's key id.
func (k *keySet) VerifySignature(ctx context.Context, jwt string) ([]byte, error) {
	jws, err := jose.ParseSignedCompact(jwt, k.algs)
	if err != nil {
		return nil, fmt.Errorf("oidc: parse jws: %w", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, errors.New("oidc: want exactly one signature")
	}
	kid := jws.Signatures[0].Header.KeyID

	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.fetched.IsZero() && k.now().Sub(k.fetched) > keyMaxAge {
		// Drop keys the upstream no longer publishes; on failure keep
		// serving from the cache.
		if keys, err := k.fetch(ctx); err == nil {
			k.keys = keys
		}
		k.fetched = k.now()
	}
	if payload, found, err := verifyWith(jws, k.keys, kid); found {
		return payload, err
	}
	if !k.fetched.IsZero() && k.now().Sub(k.fetched) < k.minInterval {
		return nil, errUnknownKey
	}
	keys, err := k.fetch(ctx)
	k.fetched = k.now()
	if err != nil {
		return nil, err
	}
	k.keys = keys
	if payload, found, err := verifyWith(jws, k.keys, kid); found {
		return payload, err
	}
	return nil, errUnknownKey
}

// verifyWith verifies jws with the key whose id is kid (any key when kid is
// empty). found reports whether a candidate key existed.
func verifyWith(jws *jose.JSONWebSignature, keys []jose.JSONWebKey, kid string) (payload []byte, found bool, err error) {
	for i := range keys {
		if kid != "" && keys[i].KeyID != kid {
			continue
		}
		if keys[i].Use != "" && keys[i].Use != "sig" {
			continue
		}
		found = true
		if p, err := jws.Verify(&keys[i]); err == nil {
			return p, true, nil
		}
	}
	if found {
		return nil, true, errBadSignature
	}
	return nil, false, nil
}

// fetch downloads the JWKS; k.mu is held, so concurrent callers wait for one
// fetch instead of starting their own.
func (k *keySet) fetch(ctx context.Context) ([]jose.JSONWebKey, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.url, nil)
	if err != nil {
		return nil, fmt.Errorf("oidc: jwks request: %w", err)
	}
	resp, err := k.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("oidc: fetch jwks: %w: %w", connectors.ErrUnavailable, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("oidc: read jwks: %w: %w", connectors.ErrUnavailable, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("oidc: fetch jwks: %w: status %d", connectors.ErrUnavailable, resp.StatusCode)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("oidc: decode jwks: %w", err)
	}
	return set.Keys, nil
}
