package admin

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Credentials are the admin listener's ways in: the admin token (kept
// only as its SHA-256, compared in constant time) and client certificates
// verified by the listener's ClientCAs. It limits failed attempts per
// client address. The admin API and the console share one, so guesses at
// the token through either count together.
type Credentials struct {
	tokenHash []byte
	certOK    bool

	mu     sync.Mutex
	limits map[string]*rate.Limiter // failed authentications per address
}

// NewCredentials checks the token and certificates opts allows.
func NewCredentials(opts Options) *Credentials {
	c := &Credentials{certOK: opts.ClientCertOK, limits: make(map[string]*rate.Limiter)}
	if opts.Token != "" {
		sum := sha256.Sum256([]byte(opts.Token))
		c.tokenHash = sum[:]
	}
	return c
}

// TokenOK reports whether tok is the admin token (surrounding space
// ignored). Always false when no token is configured.
func (c *Credentials) TokenOK(tok string) bool {
	if c.tokenHash == nil {
		return false
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	return subtle.ConstantTimeCompare(sum[:], c.tokenHash) == 1
}

// TokenEnabled reports whether an admin token is configured.
func (c *Credentials) TokenEnabled() bool { return c.tokenHash != nil }

// ClientCert reports whether r came over a TLS connection whose client
// certificate the listener verified (and certificates are accepted), with
// the certificate's subject common name.
func (c *Credentials) ClientCert(r *http.Request) (cn string, ok bool) {
	if !c.certOK || r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return "", false
	}
	return r.TLS.VerifiedChains[0][0].Subject.CommonName, true
}

// maxLimitedAddrs bounds the failure limiters kept in memory.
const maxLimitedAddrs = 10000

// AllowFailure records a failed authentication from addr and reports
// whether it may still be answered as a failure (false: answer 429). After
// 5 failures an address gets one more every 10 seconds. A correct token is
// never refused, so someone sharing the operator's address cannot lock
// the operator out; the limit only slows guessing.
func (c *Credentials) AllowFailure(addr string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	lim, ok := c.limits[addr]
	if !ok {
		if len(c.limits) > maxLimitedAddrs {
			c.limits = make(map[string]*rate.Limiter)
		}
		lim = rate.NewLimiter(rate.Every(10*time.Second), 5)
		c.limits[addr] = lim
	}
	return lim.Allow()
}
