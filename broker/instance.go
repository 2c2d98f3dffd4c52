package broker

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/fedbroker/fedbroker/broker/admin"
	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/keys"
	"github.com/fedbroker/fedbroker/broker/storage"
	"github.com/fedbroker/fedbroker/broker/storage/memory"
	redisstore "github.com/fedbroker/fedbroker/broker/storage/redis"
	"github.com/fedbroker/fedbroker/broker/storage/sqlstore"
)

// Instance is a running broker with the storage and keys it owns.
type Instance struct {
	Server *Server
	Store  storage.Storage
	Keys   *keys.Manager
	cancel context.CancelFunc
}

// Close stops key rotation and closes storage.
func (in *Instance) Close() {
	in.cancel()
	in.Server.WaitStopped(3 * time.Second)
	_ = in.Store.Close()
}

// OpenStorage opens the configured backend. For Redis it refuses to start
// (or warns, per config) under an evicting maxmemory-policy, because
// eviction silently deletes codes and refresh tokens.
//
// It also reads Redis's persistence (see redisstore.Store.Durability), logs
// what a Redis outage would cost (INFO under AOF, WARN otherwise, with a
// durability attribute) and refuses to start when Redis is less durable
// than storage.redis.require_durability.
func OpenStorage(ctx context.Context, cfg *config.Config, logger *slog.Logger) (storage.Storage, error) {
	st, _, err := openStorage(ctx, cfg, logger)
	return st, err
}

// openStorage is OpenStorage that also returns Redis's durability (nil for
// the memory store).
func openStorage(ctx context.Context, cfg *config.Config, logger *slog.Logger) (storage.Storage, *admin.Durability, error) {
	switch cfg.Storage.Type {
	case "redis":
		st, err := redisstore.Open(ctx, cfg.Storage.Redis.URL, redisstore.Options{KeyPrefix: cfg.Storage.Redis.KeyPrefix, Logger: logger})
		if err != nil {
			return nil, nil, fmt.Errorf("storage.redis: %w", err)
		}
		policy, err := st.MaxmemoryPolicy(ctx)
		switch {
		case err != nil:
			logger.Warn("cannot read Redis maxmemory-policy (CONFIG GET refused?); make sure it is noeviction", "err", err)
		case policy != "noeviction" && policy != "volatile-ttl" && !strings.HasPrefix(policy, "volatile-"):
			msg := "Redis maxmemory-policy " + policy + " evicts keys: codes, refresh tokens and sessions would vanish; set maxmemory-policy noeviction"
			if cfg.Storage.Redis.EvictionPolicy == "warn" {
				logger.Warn(msg)
			} else {
				_ = st.Close()
				return nil, nil, errors.New("storage.redis: " + msg + " (or storage.redis.eviction_policy: warn)")
			}
		case policy != "noeviction":
			logger.Warn("Redis maxmemory-policy " + policy + " may evict broker keys under memory pressure; noeviction is recommended")
		}
		d := st.Durability(ctx)
		level := slog.LevelWarn
		if d.Mode == redisstore.DurabilityAOF {
			level = slog.LevelInfo
		}
		logger.Log(ctx, level, "Redis persistence: "+d.Loss, "durability", d.Mode, "loss", d.Loss, "redis", d.Reported)
		if err := d.Require(cfg.Storage.Redis.RequireDurability); err != nil {
			_ = st.Close()
			return nil, nil, fmt.Errorf("storage.redis.require_durability: %w; turn on Redis persistence (appendonly yes) or lower the requirement", err)
		}
		return st, &admin.Durability{Mode: d.Mode, Loss: d.Loss}, nil
	case "sqlite":
		st, err := sqlstore.OpenSQLite(ctx, cfg.Storage.SQLite.Path, sqlstore.Options{Logger: logger.With("component", "storage")})
		if err != nil {
			return nil, nil, fmt.Errorf("storage.sqlite: %w", err)
		}
		d := &admin.Durability{Mode: "sqlite", Loss: sqliteLoss}
		logger.Info("SQLite storage: "+d.Loss, "durability", d.Mode, "path", cfg.Storage.SQLite.Path)
		return st, d, nil
	case "postgres":
		st, err := sqlstore.OpenPostgres(ctx, cfg.Storage.Postgres.URL, sqlstore.Options{Logger: logger.With("component", "storage")})
		if err != nil {
			return nil, nil, fmt.Errorf("storage.postgres: %w", err)
		}
		d := &admin.Durability{Mode: "postgres", Loss: postgresLoss}
		logger.Info("PostgreSQL storage: "+d.Loss, "durability", d.Mode)
		return st, d, nil
	default:
		return memory.New(), nil, nil
	}
}

// What a crash of the SQL stores costs, for the log and /admin/status.
const (
	sqliteLoss   = "nothing: every write is on disk before it is answered (WAL, synchronous=FULL); one node only"
	postgresLoss = "nothing PostgreSQL committed (as durable as its fsync, synchronous_commit and replication settings)"
)

// Start opens the configured storage and signing keys, starts key rotation
// and builds the broker: what `fedbroker serve` runs before it listens.
func Start(ctx context.Context, cfg *config.Config, logger *slog.Logger) (*Instance, error) {
	ctx, cancel := context.WithCancel(ctx)
	st, durability, err := openStorage(ctx, cfg, logger)
	if err != nil {
		cancel()
		return nil, err
	}
	kek, err := cfg.Signing.KEK()
	if err != nil {
		cancel()
		_ = st.Close()
		return nil, err
	}
	if kek == nil && cfg.Storage.Type == "memory" {
		// Nothing outlives the process: a random key-encryption key costs
		// nothing and spares a warning about keys stored in clear.
		kek = make([]byte, 32)
		_, _ = rand.Read(kek) // never fails on supported platforms (Go 1.24+)
	}
	var static []keys.StaticKey
	for _, sk := range cfg.Signing.StaticKeys {
		static = append(static, keys.StaticKey{File: sk.File, KeyID: sk.KeyID})
	}
	maxLife := max(cfg.Tokens.IDToken, cfg.Tokens.AccessToken)
	for _, c := range cfg.Clients {
		maxLife = max(maxLife, c.IDTokenLifetime, c.AccessTokenLifetime)
	}
	km, err := keys.New(ctx, st, keys.Options{
		Algorithm:        cfg.Signing.Algorithm,
		Algorithms:       cfg.Signing.Algorithms,
		RotationPeriod:   cfg.Signing.RotationPeriod,
		MaxTokenLifetime: maxLife,
		KEK:              kek,
		StaticKeys:       static,
		Logger:           logger.With("component", "keys"),
	})
	if err != nil {
		cancel()
		_ = st.Close()
		return nil, err
	}
	go km.Run(ctx)
	go heartbeat(ctx, st, logger)
	b, err := New(ctx, cfg, Options{
		Storage: st,
		Keys:    km,
		Logger:  logger,
		Audit:   logger.With("log", "audit"),
	})
	if err != nil {
		cancel()
		_ = st.Close()
		return nil, err
	}
	b.storageStatus.Durability = durability
	b.startHeartbeat(ctx)
	go b.Run(ctx)
	return &Instance{Server: b, Store: st, Keys: km, cancel: cancel}, nil
}

// heartbeat ticks the storage epoch every storage.EpochInterval until ctx
// is done, so a loss or rollback of storage is detected even while no
// security write happens (see storage.Epoch). Failures are logged at debug
// level: an unreachable store shows in readiness and in every request.
func heartbeat(ctx context.Context, st storage.Storage, logger *slog.Logger) {
	t := time.NewTicker(storage.EpochInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := st.Heartbeat(ctx); err != nil && ctx.Err() == nil {
			logger.Debug("storage epoch heartbeat failed", "err", err)
		}
	}
}
