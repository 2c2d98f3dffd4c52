package verify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/fedbroker/fedbroker/jwa"
)

// accessTokenTypes are the typ header values of RFC 9068 access tokens,
// compared case-insensitively.
var accessTokenTypes = []string{"at+jwt", "application/at+jwt"}

// Verify checks token and returns its claims. It refuses, with an error
// wrapping one of the package's sentinel errors:
//   - strings that are not a compact JWS or exceed MaxTokenSize (ErrMalformed);
//   - algorithms outside the allowlist, and bad signatures (ErrInvalidSignature);
//   - key IDs absent from the key set after a rate-limited refresh (ErrUnknownKey);
//   - a typ header other than "at+jwt" (ErrWrongType);
//   - claims missing iss, sub, exp or iat, or of the wrong JSON type (ErrMalformed);
//   - iss not exactly the issuer (ErrWrongIssuer), aud without the audience
//     (ErrWrongAudience);
//   - exp past, or nbf/iat future, beyond the leeway (*ExpiredError, ErrNotYetValid);
//   - a token bound to a DPoP key (cnf.jkt), which passes only VerifyDPoP
//     (ErrDPoPRequired), and a cnf claim without jkt (ErrMalformed);
//   - a missing scope required by WithRequiredScopes (*ScopeError).
//
// ctx bounds the key set fetch an unknown key ID may cause; verifying with
// cached keys does no I/O.
func (v *Verifier) Verify(ctx context.Context, token string) (*Claims, error) {
	claims, err := v.verifyToken(ctx, token)
	if err != nil {
		return nil, err
	}
	if claims.KeyThumbprint != "" {
		return nil, ErrDPoPRequired
	}
	if err := claims.RequireScopes(v.scopes...); err != nil {
		return nil, err
	}
	return claims, nil
}

// verifyToken makes every check of Verify but the binding and the scopes.
func (v *Verifier) verifyToken(ctx context.Context, token string) (*Claims, error) {
	header, body, err := v.parseVerified(ctx, token)
	if err != nil {
		return nil, err
	}

	typ, _ := header.ExtraHeaders[jose.HeaderType].(string)
	if !slices.ContainsFunc(accessTokenTypes, func(t string) bool { return strings.EqualFold(t, typ) }) {
		return nil, fmt.Errorf("%w: typ %q, want %q", ErrWrongType, typ, accessTokenTypes[0])
	}

	claims, err := decodeClaims(body)
	if err != nil {
		return nil, err
	}
	if err := v.checkClaims(claims); err != nil {
		return nil, err
	}
	return claims, nil
}

// parseVerified parses a compact JWS and verifies its signature with the
// issuer's keys: the checks every token of the issuer passes before its
// claims are read (access tokens in verifyToken, logout tokens here). zip,
// crit and b64 change what was signed or how; one token has one spelling.
func (v *Verifier) parseVerified(ctx context.Context, token string) (jose.Header, []byte, error) {
	if len(token) > MaxTokenSize {
		return jose.Header{}, nil, fmt.Errorf("%w: %d bytes exceeds %d", ErrMalformed, len(token), MaxTokenSize)
	}
	if token == "" || strings.Count(token, ".") != 2 || strings.ContainsFunc(token, isSpaceOrControl) {
		return jose.Header{}, nil, fmt.Errorf("%w: not a compact JWS", ErrMalformed)
	}
	jws, err := jose.ParseSignedCompact(token, v.algs)
	if err != nil {
		if _, ok := errors.AsType[*jose.ErrUnexpectedSignatureAlgorithm](err); ok {
			return jose.Header{}, nil, fmt.Errorf("%w: %w", ErrInvalidSignature, err)
		}
		return jose.Header{}, nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if len(jws.Signatures) != 1 {
		return jose.Header{}, nil, fmt.Errorf("%w: %d signatures", ErrMalformed, len(jws.Signatures))
	}
	header := jws.Signatures[0].Protected
	if err := jwa.CheckHeader(header.ExtraHeaders); err != nil {
		return jose.Header{}, nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if err := jwa.CheckCompact(token); err != nil {
		return jose.Header{}, nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	body, err := v.verifySignature(ctx, jws, header)
	if err != nil {
		return jose.Header{}, nil, err
	}
	return header, body, nil
}

func isSpaceOrControl(r rune) bool { return r <= ' ' || r == 0x7f }

// verifySignature finds the key the header names and returns the verified
// payload. A key ID missing from the cache causes at most one rate-limited
// refresh.
func (v *Verifier) verifySignature(ctx context.Context, jws *jose.JSONWebSignature, h jose.Header) ([]byte, error) {
	keys := v.keys.lookup(h.KeyID)
	if len(keys) == 0 && h.KeyID != "" && v.keys.refreshForMiss(ctx, h.KeyID) {
		keys = v.keys.lookup(h.KeyID)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: kid %q", ErrUnknownKey, h.KeyID)
	}
	for i := range keys {
		k := &keys[i]
		if k.Algorithm != "" && k.Algorithm != h.Algorithm {
			continue
		}
		if body, err := jws.Verify(k); err == nil {
			return body, nil
		}
	}
	return nil, fmt.Errorf("%w: alg %s kid %q", ErrInvalidSignature, h.Algorithm, h.KeyID)
}

// decodeClaims decodes the verified payload once, into Raw, and takes the
// registered claims from it with their JSON types checked.
func decodeClaims(body []byte) (*Claims, error) {
	var raw map[string]any
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, fmt.Errorf("%w: claims: %w", ErrMalformed, err)
	}
	c := &Claims{Raw: raw}
	var missing, errs []string
	str := func(name string, dst *string, required bool) {
		switch v := raw[name].(type) {
		case string:
			*dst = v
		case nil:
		default:
			errs = append(errs, name)
		}
		if required && *dst == "" {
			missing = append(missing, name)
		}
	}
	date := func(name string, dst *time.Time) bool {
		switch v := raw[name].(type) {
		case float64:
			*dst = time.Unix(int64(v), 0)
			return true
		case nil:
		default:
			errs = append(errs, name)
		}
		return false
	}
	strs := func(name string, single bool) []string {
		switch v := raw[name].(type) {
		case nil:
			return nil
		case string:
			if single {
				return []string{v}
			}
		case []any:
			out := make([]string, 0, len(v))
			for _, x := range v {
				s, ok := x.(string)
				if !ok {
					errs = append(errs, name)
					return nil
				}
				out = append(out, s)
			}
			return out
		}
		errs = append(errs, name)
		return nil
	}
	str("iss", &c.Issuer, true)
	str("sub", &c.Subject, true)
	if !date("exp", &c.Expiry) {
		missing = append(missing, "exp")
	}
	if !date("iat", &c.IssuedAt) {
		missing = append(missing, "iat")
	}
	date("nbf", &c.NotBefore)
	str("client_id", &c.ClientID, false)
	str("scope", &c.Scope, false)
	str("jti", &c.JTI, false)
	c.Audience = strs("aud", true)
	c.Groups = strs("groups", false)
	c.Roles = strs("roles", false)
	switch cnf := raw["cnf"].(type) {
	case nil:
	case map[string]any:
		// A confirmation method other than jkt (an mTLS certificate,
		// RFC 8705) binds the token to something this package cannot
		// check: such a token must not pass as a bearer token.
		jkt, ok := cnf["jkt"].(string)
		if !ok || jkt == "" {
			errs = append(errs, "cnf")
		}
		c.KeyThumbprint = jkt
	default:
		errs = append(errs, "cnf")
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: claims of the wrong type: %s", ErrMalformed, strings.Join(errs, ", "))
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%w: missing claims %s", ErrMalformed, strings.Join(missing, ", "))
	}
	return c, nil
}

// checkClaims checks issuer, audience and lifetime.
func (v *Verifier) checkClaims(c *Claims) error {
	if c.Issuer != v.issuer {
		return fmt.Errorf("%w: %q", ErrWrongIssuer, c.Issuer)
	}
	if !slices.Contains(c.Audience, v.audience) {
		return fmt.Errorf("%w: %q does not contain %q", ErrWrongAudience, c.Audience, v.audience)
	}
	now := v.now()
	if now.After(c.Expiry.Add(v.leeway)) {
		return &ExpiredError{Expiry: c.Expiry}
	}
	if !c.NotBefore.IsZero() && now.Add(v.leeway).Before(c.NotBefore) {
		return fmt.Errorf("%w: nbf %s", ErrNotYetValid, c.NotBefore.UTC().Format(time.RFC3339))
	}
	if now.Add(v.leeway).Before(c.IssuedAt) {
		return fmt.Errorf("%w: iat %s in the future", ErrNotYetValid, c.IssuedAt.UTC().Format(time.RFC3339))
	}
	return nil
}
