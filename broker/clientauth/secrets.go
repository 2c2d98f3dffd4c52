package clientauth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"strings"
	"sync"
	"time"

	"github.com/fedbroker/fedbroker/broker/config"
)

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

// maxCachedSecrets bounds the cache.
const maxCachedSecrets = 10000

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
	if len(sc.ok) < maxCachedSecrets {
		sc.ok[d] = now.Add(sc.ttl)
	}
	return true
}
