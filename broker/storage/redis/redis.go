// Package redis is the production storage backend, on a go-redis v9
// UniversalClient: a single server, a Sentinel-managed primary or a Redis
// Cluster.
//
// Records are JSON. Expiry uses Redis TTLs (PEXPIREAT at the record's
// expiry), so Redis frees expired records itself; reads also check expiry
// against the clock. Operations that must be atomic run as one Lua script
// or one conditional command, and every key one script touches shares a hash
// tag, so the store works on Redis Cluster without CROSSSLOT errors. Refresh
// tokens must have the form "<familyID>.<secret>": all keys of a family live
// under the tag {<prefix>:fam:<familyID>}. Secrets (codes, refresh tokens,
// session ids) are stored only as storage.Hash of the secret.
//
// RevokeSubject uses a per-subject index of families and sessions (a sorted
// set scored by record expiry, pruned of expired entries on every insert);
// entries of records that were deleted meanwhile are skipped. Links all
// share one hash tag so ListLinks is one slot's MGET.
//
// Every Redis failure is returned wrapping storage.ErrUnavailable. Deleting
// an absent session or link returns storage.ErrNotFound.
//
// The broker relies on keys not being evicted: run Redis with
// maxmemory-policy noeviction (or volatile-*), which MaxmemoryPolicy reports.
package redis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/fedbroker/fedbroker/broker/storage"
)

var _ storage.Storage = (*Store)(nil)

// Options configure a Store.
type Options struct {
	// KeyPrefix starts every key (default "fb"); it must not contain '{' or
	// '}'. Several brokers can share a database with different prefixes.
	KeyPrefix string
	// Logger receives warnings such as corrupt records (default: discard).
	// When set, Open also routes go-redis's own log lines through it (see
	// SetLogger), so that they are JSON like the broker's.
	Logger *slog.Logger
}

// Store is a storage.Storage on Redis. It is safe for concurrent use.
type Store struct {
	c      goredis.UniversalClient
	prefix string
	log    *slog.Logger
	now    func() time.Time
	epoch  *storage.EpochTracker
}

// Open connects to the Redis named by url, checks that it answers, and
// returns a Store that owns the client. The URL forms are
//
//	redis://[user[:password]@]host[:port][/db][?option=value&...]
//	rediss://[user[:password]@]host[:port][/db][?option=value&...]   (TLS)
//	unix://[user[:password]@]/path/to/redis.sock[?db=N&option=value&...]
//	redis-sentinel://[user[:password]@]host[:port][,host[:port]...]/master[?db=N&option=value&...]
//	redis-cluster://[user[:password]@]host[:port][,host[:port]...][?option=value&...]
//
// Every form takes go-redis's options for its topology (dial_timeout,
// read_timeout, write_timeout, max_retries, pool_size, ...); without them
// the client dials for at most 2 s, reads and writes for at most 1 s and
// retries once. A sentinel URL may set sentinel_username and
// sentinel_password when the sentinels' credentials differ. parseURL lists
// the exact rules. A malformed URL is an error naming the problem, never
// showing the user info.
func Open(ctx context.Context, url string, opts Options) (*Store, error) {
	if strings.ContainsAny(opts.KeyPrefix, "{}") {
		return nil, fmt.Errorf("redis: key prefix %q must not contain '{' or '}'", opts.KeyPrefix)
	}
	cfg, err := parseURL(url)
	if err != nil {
		return nil, err
	}
	if opts.Logger != nil {
		SetLogger(opts.Logger)
	}
	s := New(cfg.newClient(), opts)
	if err := s.Ping(ctx); err != nil {
		_ = s.Close()
		return nil, err
	}
	if err := s.Heartbeat(ctx); err != nil {
		_ = s.Close()
		return nil, err
	}
	return s, nil
}

// New wraps an existing client; Close closes it. opts.KeyPrefix must not
// contain '{' or '}' (Open checks this; New uses the default prefix instead).
func New(client goredis.UniversalClient, opts Options) *Store {
	prefix := opts.KeyPrefix
	if prefix == "" || strings.ContainsAny(prefix, "{}") {
		prefix = "fb"
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Store{c: client, prefix: prefix, log: log, now: time.Now, epoch: storage.NewEpochTracker(log)}
	s.installOnConnect()
	return s
}

// Ping reports whether Redis answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.c.Ping(ctx).Err(); err != nil {
		return unavailable("ping", err)
	}
	return nil
}

// Close closes the client.
func (s *Store) Close() error {
	if err := s.c.Close(); err != nil {
		return unavailable("close", err)
	}
	return nil
}

// MaxmemoryPolicy returns Redis's maxmemory-policy setting, so the broker can
// warn when Redis may evict keys it relies on.
func (s *Store) MaxmemoryPolicy(ctx context.Context) (string, error) {
	m, err := s.c.ConfigGet(ctx, "maxmemory-policy").Result()
	if err != nil {
		return "", unavailable("config get maxmemory-policy", err)
	}
	p, ok := m["maxmemory-policy"]
	if !ok {
		return "", fmt.Errorf("redis: config get maxmemory-policy: no value: %w", storage.ErrUnavailable)
	}
	return p, nil
}

// unavailable wraps a go-redis error (never goredis.Nil) as a backend failure.
func unavailable(op string, err error) error {
	return fmt.Errorf("redis: %s: %w: %w", op, storage.ErrUnavailable, err)
}

func notFound(what string) error { return fmt.Errorf("redis: %s: %w", what, storage.ErrNotFound) }

// isNil reports whether err is go-redis's "no such key".
func isNil(err error) bool { return errors.Is(err, goredis.Nil) }

// Keys. Variable parts come last or inside a hash tag that only they share.

func (s *Store) authReqKey(id string) string { return s.prefix + ":areq:" + id }
func (s *Store) codeKey(hash string) string  { return s.prefix + ":code:" + hash }
func (s *Store) sessKey(hash string) string  { return s.prefix + ":sess:" + hash }
func (s *Store) keysKey() string             { return s.prefix + ":keys" }
func (s *Store) leaseKey(name string) string { return s.prefix + ":lease:" + name }
func (s *Store) seenKey(ns, id string) string {
	return s.prefix + ":seen:" + strconv.Itoa(len(ns)) + ":" + ns + ":" + id
}
func (s *Store) subjFamKey(sub string) string  { return s.prefix + ":subj:fam:" + sub }
func (s *Store) subjSessKey(sub string) string { return s.prefix + ":subj:sess:" + sub }
func (s *Store) linkKey(key string) string     { return "{" + s.prefix + ":links}:k:" + key }
func (s *Store) linkIndexKey() string          { return "{" + s.prefix + ":links}:idx" }

// famKeys returns the family record, rotated-token set and tombstone keys.
// No version since the O(1) reuse detection writes the rotated-token set;
// scripts delete what an earlier version left there.
func (s *Store) famKeys(id string) []string {
	tag := "{" + s.prefix + ":fam:" + id + "}"
	return []string{tag + ":f", tag + ":r", tag + ":t"}
}

// ms is t in Unix milliseconds, rounded up so a key never expires before t.
func ms(t time.Time) int64 {
	m := t.UnixMilli()
	if t.After(time.UnixMilli(m)) {
		m++
	}
	return m
}

// msTTL is d in whole milliseconds, at least 1.
func msTTL(d time.Duration) int64 {
	m := d.Milliseconds()
	if m < 1 {
		m = 1
	}
	return m
}
