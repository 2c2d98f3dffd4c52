package keys

import (
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/fedbroker/fedbroker/jwa"
)

// state is an immutable snapshot of the loaded keys; Sign, Verify and JWKS
// read it without locks.
type state struct {
	version int64
	set     *keySet // nil for static keys
	signing map[string]*signingKey
	verify  map[string]key // published keys by kid
	// algs are the algorithms of the published keys (every algorithm of
	// the shared set), the ones Verify accepts.
	algs []jose.SignatureAlgorithm
	jwks []byte
	etag string
	// expires is the earliest RetireAt among published retired keys; the
	// snapshot must be rebuilt then to stop publishing that key.
	expires time.Time
}

// group is the keys of one algorithm; keys[0] signs.
type group struct {
	alg  string
	keys []key
}

// signingKey signs with one private key, caching a go-jose Signer per typ.
type signingKey struct {
	kid     string
	alg     string
	priv    crypto.Signer
	signers sync.Map // typ -> jose.Signer
}

func (k *signingKey) signer(typ string) (jose.Signer, error) {
	if s, ok := k.signers.Load(typ); ok {
		return s.(jose.Signer), nil
	}
	opts := &jose.SignerOptions{}
	if typ != "" {
		opts = opts.WithType(jose.ContentType(typ))
	}
	s, err := jose.NewSigner(jose.SigningKey{
		Algorithm: jose.SignatureAlgorithm(k.alg),
		Key:       jose.JSONWebKey{Key: k.priv, KeyID: k.kid, Algorithm: k.alg},
	}, opts)
	if err != nil {
		return nil, fmt.Errorf("keys: signer for %s: %w", k.kid, err)
	}
	got, _ := k.signers.LoadOrStore(typ, s)
	return got.(jose.Signer), nil
}

// newState builds a snapshot. Every algorithm the Manager signs with must
// have a group whose first key has its private half.
func (m *Manager) newState(groups []group, set *keySet, version int64) (*state, error) {
	st := &state{
		version: version,
		set:     set,
		signing: map[string]*signingKey{},
		verify:  map[string]key{},
	}
	var jwks jose.JSONWebKeySet
	for _, g := range groups {
		if len(g.keys) > 0 && !slices.Contains(st.algs, jose.SignatureAlgorithm(g.alg)) {
			st.algs = append(st.algs, jose.SignatureAlgorithm(g.alg))
		}
		for i, k := range g.keys {
			if _, dup := st.verify[k.kid]; dup {
				return nil, fmt.Errorf("keys: duplicate key id %q", k.kid)
			}
			st.verify[k.kid] = k
			if !k.retireAt.IsZero() && (st.expires.IsZero() || k.retireAt.Before(st.expires)) {
				st.expires = k.retireAt
			}
			jwks.Keys = append(jwks.Keys, jose.JSONWebKey{Key: k.public, KeyID: k.kid, Algorithm: k.alg, Use: "sig"})
			if i == 0 && slices.Contains(m.algs, g.alg) {
				if k.private == nil {
					return nil, fmt.Errorf("keys: signing key %s has no private key", k.kid)
				}
				st.signing[g.alg] = &signingKey{kid: k.kid, alg: g.alg, priv: k.private}
			}
		}
	}
	for _, a := range m.algs {
		if st.signing[a] == nil {
			return nil, fmt.Errorf("keys: no %s signing key", a)
		}
	}
	body, err := json.Marshal(jwks)
	if err != nil {
		return nil, fmt.Errorf("keys: encode JWKS: %w", err)
	}
	st.jwks, st.etag = body, etagOf(body)
	return st, nil
}

// storedState decodes set into a snapshot: per algorithm (configured ones
// first) the Active, Next and unexpired Retired keys.
func (m *Manager) storedState(set *keySet, version int64, now time.Time) (*state, error) {
	order := slices.Clone(m.algs)
	var rest []string
	for a := range set.Algs {
		if !slices.Contains(order, a) {
			rest = append(rest, a)
		}
	}
	slices.Sort(rest)
	var groups []group
	for _, a := range append(order, rest...) {
		as := set.Algs[a]
		if as == nil {
			continue
		}
		g := group{alg: a}
		stored := []storedKey{as.Active, as.Next}
		for _, r := range slices.Backward(as.Retired) {
			if now.Before(r.RetireAt) {
				stored = append(stored, r)
			}
		}
		for _, sk := range stored {
			if sk.Alg != a {
				return nil, fmt.Errorf("keys: stored key %s has algorithm %q in the %s set", sk.KID, sk.Alg, a)
			}
			k, err := m.sealer.decode(sk)
			if err != nil {
				return nil, err
			}
			g.keys = append(g.keys, k)
		}
		groups = append(groups, g)
	}
	return m.newState(groups, set, version)
}

// activeKey is the Active key of alg ("" for the default algorithm).
func (m *Manager) activeKey(alg string) (*signingKey, error) {
	st := m.state.Load()
	if st == nil {
		return nil, ErrNotReady
	}
	if alg == "" {
		alg = m.algs[0]
	}
	k := st.signing[alg]
	if k == nil {
		return nil, fmt.Errorf("keys: no signing key for algorithm %q", alg)
	}
	return k, nil
}

// Sign returns a compact JWS over payload (already-encoded JSON claims)
// with the Active key of alg ("" for the default algorithm). The protected
// header carries alg, kid and, unless typ is empty, typ ("JWT" for ID
// tokens, "at+jwt" for access tokens). Sign does no I/O.
func (m *Manager) Sign(alg string, payload []byte, typ string) (string, error) {
	k, err := m.activeKey(alg)
	if err != nil {
		return "", err
	}
	s, err := k.signer(typ)
	if err != nil {
		return "", err
	}
	jws, err := s.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("keys: sign: %w", err)
	}
	tok, err := jws.CompactSerialize()
	if err != nil {
		return "", fmt.Errorf("keys: sign: %w", err)
	}
	return tok, nil
}

// ErrUnknownKey means a token names a key id that is not published.
var ErrUnknownKey = errors.New("keys: unknown signing key")

// Verify checks a compact JWS against the published keys (Active, Next and
// Retired not yet expired) and returns its payload and typ header. Only
// the algorithms of the published keys (those of the shared key set) are accepted,
// narrowed to algs when given; "none" and HMAC never are. The token must name a published key id
// whose algorithm matches its header; a header asking for compression or
// an extension (zip, crit, b64: jwa.CheckHeader) and a token not in
// canonical base64url (jwa.CheckCompact) are refused. Verify does no I/O
// and does not look at the claims: expiry, issuer and audience are the
// caller's to check.
func (m *Manager) Verify(token string, algs ...string) (payload []byte, typ string, err error) {
	st := m.state.Load()
	if st == nil {
		return nil, "", ErrNotReady
	}
	// Every algorithm of the shared set, not only this replica's: while
	// signing.algorithms differs between replicas, one verifies what
	// another signed. The key's own algorithm is checked below.
	allowed := st.algs
	if len(algs) > 0 {
		allowed = nil
		for _, a := range st.algs {
			if slices.Contains(algs, string(a)) {
				allowed = append(allowed, a)
			}
		}
	}
	if len(allowed) == 0 {
		return nil, "", fmt.Errorf("keys: none of the algorithms %q is in use", algs)
	}
	if err := jwa.CheckCompact(token); err != nil {
		return nil, "", fmt.Errorf("keys: %w", err)
	}
	jws, err := jose.ParseSignedCompact(token, allowed)
	if err != nil {
		return nil, "", fmt.Errorf("keys: parse token: %w", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, "", errors.New("keys: token must carry exactly one signature")
	}
	if err := jwa.CheckHeader(jws.Signatures[0].Header.ExtraHeaders); err != nil {
		return nil, "", fmt.Errorf("keys: %w", err)
	}
	h := jws.Signatures[0].Protected
	k, ok := st.verify[h.KeyID]
	if !ok {
		return nil, "", fmt.Errorf("%w %q", ErrUnknownKey, h.KeyID)
	}
	if h.Algorithm != k.alg {
		return nil, "", fmt.Errorf("keys: token alg %q does not match key %s (%s)", h.Algorithm, k.kid, k.alg)
	}
	payload, err = jws.Verify(k.public)
	if err != nil {
		return nil, "", fmt.Errorf("keys: verify token: %w", err)
	}
	typ, _ = h.ExtraHeaders[jose.HeaderType].(string)
	return payload, typ, nil
}

// JWKS returns the published public keys as a JSON Web Key Set and its
// ETag: per algorithm the Active, Next and unexpired Retired keys. It does
// no I/O; the body is nil before a key set is loaded.
func (m *Manager) JWKS() (body []byte, etag string) {
	st := m.state.Load()
	if st == nil {
		return nil, ""
	}
	return slices.Clone(st.jwks), st.etag
}
