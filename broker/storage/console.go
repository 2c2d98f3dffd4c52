package storage

import "time"

// ConsoleSession is an admin console sign-in, kept in an AuthRequest
// record so that every replica behind a load balancer knows it: stored
// under ConsoleSessionID(cookie) until the sign-in's absolute timeout.
// Its ClientID and RedirectURI are empty: no client is involved. A record
// with an empty Admin holds the key of the CSRF tokens of client
// certificate sign-ins (which have no cookie), under
// ConsoleCertCSRFKeyID.
type ConsoleSession struct {
	Admin string `json:"admin,omitempty"`
	// CSRF is the session's CSRF token (or the certificate CSRF key).
	CSRF    string    `json:"csrf"`
	Created time.Time `json:"created"`
	// LastSeen is when the session was last used, kept to the minute.
	LastSeen time.Time `json:"last_seen"`
}

// ConsoleSessionID is the record id of the console session whose cookie
// holds secret: a hash, so storage never holds the cookie.
func ConsoleSessionID(secret string) string { return "console." + Hash(secret) }

// ConsoleCertCSRFKeyID is the record id of the certificate CSRF key.
const ConsoleCertCSRFKeyID = "console.cert-csrf-key"
