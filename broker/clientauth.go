package broker

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/fedbroker/fedbroker/broker/config"
)

// clientForm parses a small form body and authenticates its client, for
// the revocation and introspection endpoints.
func (s *Server) clientForm(c echo.Context) (*client, error) {
	r := c.Request()
	r.Body = http.MaxBytesReader(c.Response(), r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		return nil, invalidRequest("the body could not be parsed")
	}
	cl, err := s.authenticateClient(c, s.rt.Load())
	if err != nil {
		return nil, err
	}
	if r.PostForm.Get("token") == "" {
		return nil, invalidRequest("token is required")
	}
	return cl, nil
}

// authenticateClient identifies the client of a token, revocation or
// introspection request (RFC 6749 §2.3). Exactly one method may be used:
// client_secret_basic, client_secret_post, or none (public clients only).
func (s *Server) authenticateClient(c echo.Context, rt *runtime) (*client, error) {
	r := c.Request()
	form := r.PostForm
	basicID, basicSecret, hasBasic := r.BasicAuth()
	_, hasPostSecret := form["client_secret"]
	_, hasAssertion := form["client_assertion"]
	methods := 0
	for _, m := range []bool{hasBasic, hasPostSecret, hasAssertion} {
		if m {
			methods++
		}
	}
	if methods > 1 {
		return nil, invalidClient("use exactly one client authentication method")
	}
	if hasAssertion {
		return s.authenticateAssertion(c, rt)
	}
	if len(form["client_id"]) > 1 || len(form["client_secret"]) > 1 {
		return nil, invalidRequest("repeated client credentials")
	}
	var id, secret string
	switch {
	case hasBasic:
		// RFC 6749 §2.3.1: both parts are form-urlencoded before encoding.
		var err1, err2 error
		id, err1 = url.QueryUnescape(basicID)
		secret, err2 = url.QueryUnescape(basicSecret)
		if err1 != nil || err2 != nil {
			return nil, invalidClient("malformed basic credentials")
		}
		if fid := form.Get("client_id"); fid != "" && fid != id {
			return nil, invalidClient("client_id does not match the authenticated client")
		}
	case hasPostSecret:
		id, secret = form.Get("client_id"), form.Get("client_secret")
	default:
		id = form.Get("client_id")
	}
	if id == "" {
		return nil, invalidClient("client authentication is required")
	}
	cl, ok := rt.clients[id]
	if !ok {
		return nil, invalidClient("unknown client or wrong credentials")
	}
	if cl.Public {
		if hasBasic || hasPostSecret {
			return nil, invalidClient("public clients have no secret")
		}
		return cl, nil
	}
	if !hasBasic && !hasPostSecret {
		return nil, invalidClient("client authentication is required")
	}
	if cl.TokenEndpointAuthMethod == authPrivateKeyJWT {
		return nil, invalidClient("this client authenticates with private_key_jwt")
	}
	if secret == "" || len(secret) > 512 || !s.secrets.verify(cl.ID, cl.SecretHash, secret) {
		s.auditEvent("client_auth_failed", "client_id", cl.ID, "remote", c.RealIP())
		return nil, invalidClient("unknown client or wrong credentials")
	}
	return cl, nil
}

// secretCache remembers, for a short time, that a client secret was
// verified, so that a bcrypt-hashed secret does not cost milliseconds on
// every token request. It keeps only a keyed digest of (client, hash,
// secret) under a per-process random key, never the secret.
type secretCache struct {
	mu   sync.Mutex
	key  [32]byte
	ok   map[string]time.Time
	ttl  time.Duration
	now  func() time.Time
	last time.Time
}

func newSecretCache(now func() time.Time) *secretCache {
	sc := &secretCache{ok: make(map[string]time.Time), ttl: 5 * time.Minute, now: now}
	_, _ = rand.Read(sc.key[:])
	return sc
}

func (sc *secretCache) digest(clientID, hash, secret string) string {
	m := hmac.New(sha256.New, sc.key[:])
	m.Write([]byte(clientID))
	m.Write([]byte{0})
	m.Write([]byte(hash))
	m.Write([]byte{0})
	m.Write([]byte(secret))
	return string(m.Sum(nil))
}

func (sc *secretCache) verify(clientID, hash, secret string) bool {
	if !strings.HasPrefix(hash, "$2") {
		// Fast salted hash of a generated high-entropy secret.
		return config.VerifySecret(hash, secret)
	}
	d := sc.digest(clientID, hash, secret)
	now := sc.now()
	sc.mu.Lock()
	exp, hit := sc.ok[d]
	sc.mu.Unlock()
	if hit && now.Before(exp) {
		return true
	}
	if !config.VerifySecret(hash, secret) {
		return false
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if now.Sub(sc.last) > sc.ttl {
		for k, e := range sc.ok {
			if !now.Before(e) {
				delete(sc.ok, k)
			}
		}
		sc.last = now
	}
	if len(sc.ok) < 10000 {
		sc.ok[d] = now.Add(sc.ttl)
	}
	return true
}

// requireClientGrant answers unauthorized_client when the client may not use
// grant.
func requireClientGrant(cl *client, grant string) error {
	if !cl.grants[grant] {
		return newOAuthError(http.StatusBadRequest, errUnauthorizedClient, "the client may not use grant_type %s", grant)
	}
	return nil
}
