// Package redisreplay is a verify.ReplayStore on Redis: every replica of
// a service that verifies DPoP proofs or Logout Tokens with one Redis
// refuses an identifier any of them accepted before.
//
//	client := redis.NewClient(&redis.Options{Addr: "redis:6379"})
//	v, err := verify.New(ctx, issuer, audience,
//		verify.WithReplayStore(redisreplay.New(client, "orders:replay:")))
//
// Each identifier is one key, the prefix followed by the hex SHA-256 of
// what the Verifier records (so its length does not depend on the
// token's), set with SET NX and an expiry (PXAT) at the time after which the
// proof or token would be refused anyway.
package redisreplay

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Store records identifiers in Redis under one key prefix.
type Store struct {
	c      redis.UniversalClient
	prefix string
	now    func() time.Time
}

// New returns a Store on c whose keys start with prefix (for example
// "orders:replay:"); services that must not see each other's identifiers
// use different prefixes.
func New(c redis.UniversalClient, prefix string) *Store {
	return &Store{c: c, prefix: prefix, now: time.Now}
}

// Claim records key until until with SET NX (until rounded up to the
// millisecond; at least a second from now) and reports whether it was not
// recorded before. An error is Redis's: the caller refuses the proof or
// token.
func (s *Store) Claim(ctx context.Context, key string, until time.Time) (bool, error) {
	if min := s.now().Add(time.Second); until.Before(min) {
		until = min
	}
	sum := sha256.Sum256([]byte(key))
	at := until.Truncate(time.Millisecond)
	if at.Before(until) {
		at = at.Add(time.Millisecond)
	}
	err := s.c.SetArgs(ctx, s.prefix+hex.EncodeToString(sum[:]), "1", redis.SetArgs{Mode: "NX", ExpireAt: at}).Err()
	switch {
	case errors.Is(err, redis.Nil):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("redisreplay: %w", err)
	}
	return true, nil
}
