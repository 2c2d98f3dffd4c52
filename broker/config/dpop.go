package config

import "time"

// DPoP is tokens.dpop: how the broker checks DPoP proofs (RFC 9449) at
// its token endpoint, /userinfo and /introspect. Proofs are always
// accepted; a client's require_dpop makes them mandatory for it.
type DPoP struct {
	// Nonce makes the token endpoint require, in every DPoP proof, a nonce
	// it issued (RFC 9449 §8): a proof without one, or with one older than
	// NonceLifetime, is answered use_dpop_nonce with a fresh nonce in the
	// DPoP-Nonce header. Every token response carries the next nonce.
	Nonce bool `yaml:"nonce"`
	// NonceLifetime is how long an issued nonce is accepted (Go duration
	// syntax); unset: DefaultDPoPNonceLifetime. Read it with
	// NonceTTL.
	NonceLifetime time.Duration `yaml:"nonce_lifetime"`
	// MaxSkew is how far a proof's iat may be from the broker's clock,
	// either way; unset: DefaultDPoPSkew. Read it with Skew.
	MaxSkew time.Duration `yaml:"max_skew"`
}

// Limits and defaults of tokens.dpop.
const (
	DefaultDPoPNonceLifetime = 5 * time.Minute
	MinDPoPNonceLifetime     = 30 * time.Second
	MaxDPoPNonceLifetime     = time.Hour
	DefaultDPoPSkew          = 60 * time.Second
	MaxDPoPSkew              = 5 * time.Minute
)

// NonceTTL returns how long an issued nonce is accepted, the default
// applied.
func (d DPoP) NonceTTL() time.Duration {
	if d.NonceLifetime == 0 {
		return DefaultDPoPNonceLifetime
	}
	return d.NonceLifetime
}

// Skew returns how far a proof's iat may be from now, the default
// applied.
func (d DPoP) Skew() time.Duration {
	if d.MaxSkew == 0 {
		return DefaultDPoPSkew
	}
	return d.MaxSkew
}

// validateDPoP checks tokens.dpop. Nonces are sealed with a key derived
// from signing.key_encryption_key so that every replica accepts every
// other's; without it each process draws its own key, which only works
// when one process holds all state (memory or SQLite storage).
func validateDPoP(c *Config, ps *problems) {
	d := c.Tokens.DPoP
	switch l := d.NonceLifetime; {
	case l < 0:
		ps.Add("tokens.dpop.nonce_lifetime", "must not be negative, not %s", l)
	case l != 0 && (l < MinDPoPNonceLifetime || l > MaxDPoPNonceLifetime):
		ps.Add("tokens.dpop.nonce_lifetime", "must be between %s and %s, not %s", MinDPoPNonceLifetime, MaxDPoPNonceLifetime, l)
	}
	switch s := d.MaxSkew; {
	case s < 0:
		ps.Add("tokens.dpop.max_skew", "must not be negative, not %s", s)
	case s > MaxDPoPSkew:
		ps.Add("tokens.dpop.max_skew", "must be at most %s, not %s", MaxDPoPSkew, s)
	}
	if d.Nonce && c.Signing.KeyEncryptionKey == "" && c.Storage.Type != "memory" && c.Storage.Type != "sqlite" {
		ps.Add("tokens.dpop.nonce", "needs signing.key_encryption_key with %s storage, so that every replica accepts the nonces of the others", c.Storage.Type)
	}
}
