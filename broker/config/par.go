package config

import (
	"slices"
	"time"
)

// PAR configures pushed authorization requests (RFC 9126): the `par:`
// section. A client may always push its authorization requests to the PAR
// endpoint; Require makes that the only way for every client, and a
// client's require_pushed_authorization_requests for that client alone.
type PAR struct {
	// RequestLifetime is how long a pushed request waits for the browser
	// to bring its request_uri to /authorize (Go duration syntax, whole
	// seconds, from 1s to MaxPARRequestLifetime); unset:
	// DefaultPARRequestLifetime. Read it with Lifetime.
	RequestLifetime *time.Duration `yaml:"request_lifetime"`
	// Require refuses every authorization request that was not pushed
	// first (discovery's require_pushed_authorization_requests).
	Require bool `yaml:"require"`
}

// Bounds of par.request_lifetime. RFC 9126 §2.2 suggests a lifetime
// between 5 and 600 seconds; the request_uri is used once, at once.
const (
	DefaultPARRequestLifetime = 60 * time.Second
	MaxPARRequestLifetime     = 600 * time.Second
)

// Lifetime returns how long a pushed request lives: RequestLifetime, or
// DefaultPARRequestLifetime when unset.
func (p PAR) Lifetime() time.Duration {
	if p.RequestLifetime == nil {
		return DefaultPARRequestLifetime
	}
	return *p.RequestLifetime
}

// validatePAR checks the par section and the clients' PAR requirement.
func validatePAR(c *Config, ps *problems) {
	if d := c.PAR.RequestLifetime; d != nil {
		switch {
		case *d < time.Second:
			ps.Add("par.request_lifetime", "must be at least 1s, not %s", *d)
		case *d > MaxPARRequestLifetime:
			ps.Add("par.request_lifetime", "must be at most %s, not %s", MaxPARRequestLifetime, *d)
		case *d%time.Second != 0:
			ps.Add("par.request_lifetime", "must be whole seconds (expires_in is in seconds), not %s", *d)
		}
	}
	for i, cl := range c.Clients {
		if cl.RequirePushedAuthorizationRequests && !slices.Contains(cl.GrantTypes, GrantAuthorizationCode) {
			ps.Add(index("clients", i)+".require_pushed_authorization_requests", "the client does not use the authorization code flow: add authorization_code to its grant_types or remove this")
		}
	}
}
