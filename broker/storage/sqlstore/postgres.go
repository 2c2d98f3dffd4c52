package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// DefaultPostgresPool is the most connections a Store opens unless the URL
// sets pool_max_conns.
const DefaultPostgresPool = 16

// OpenPostgres connects to the PostgreSQL database named by a
// postgres:// (or postgresql://) URL and migrates it unless
// opts.NoMigrate. The URL takes libpq's parameters (sslmode, sslrootcert,
// connect_timeout, search_path as options, ...) and pool_max_conns (default
// DefaultPostgresPool); the password may come from the URL, from
// PGPASSWORD or from a .pgpass file, as libpq does. Without
// connect_timeout a connection attempt gives up after 5 s. A malformed
// URL is an error naming the problem, never showing the password; a
// database that does not answer is an error wrapping
// storage.ErrUnavailable.
func OpenPostgres(ctx context.Context, rawURL string, opts Options) (*Store, error) {
	cfg, poolSize, err := parsePostgresURL(rawURL)
	if err != nil {
		return nil, err
	}
	s := newStore(postgresDialect, opts)
	db := stdlib.OpenDB(*cfg, stdlib.OptionAfterConnect(s.afterConnect))
	db.SetMaxOpenConns(poolSize)
	db.SetMaxIdleConns(poolSize)
	db.SetConnMaxIdleTime(5 * time.Minute)
	db.SetConnMaxLifetime(time.Hour)
	s.w, s.r = db, db
	s.listen = &listener{s: s, cfg: cfg}
	if err := s.Ping(ctx); err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("postgres: cannot reach %s: %w", describe(cfg), err)
	}
	return s.start(ctx, opts)
}

// afterConnect ticks the epoch on every new connection before it carries
// anything, once the schema is in place, so that the first statement after
// PostgreSQL came back (from a crash, a failover or a restore) sees the
// new epoch. A connection whose tick fails is closed and not used.
func (s *Store) afterConnect(ctx context.Context, c *pgx.Conn) error {
	if !s.ready.Load() {
		return nil
	}
	t, err := s.tick(ctx, pgxRows{c})
	if err != nil {
		_ = c.Close(context.Background())
		return fmt.Errorf("storage epoch: %w", err)
	}
	s.epoch.Observe(t.epoch, t.change)
	return nil
}

// pgxRows runs a tick on a raw pgx connection.
type pgxRows struct{ c *pgx.Conn }

func (r pgxRows) queryRow(ctx context.Context, query string, args ...any) scanner {
	return r.c.QueryRow(ctx, query, args...)
}

// describe names a database for messages: user, host and database, never
// the password.
func describe(cfg *pgx.ConnConfig) string {
	return fmt.Sprintf("user=%s host=%s port=%d database=%s", cfg.User, cfg.Host, cfg.Port, cfg.Database)
}

// parsePostgresURL checks rawURL and returns pgx's configuration and the
// pool size. Its errors never contain the password.
func parsePostgresURL(rawURL string) (*pgx.ConnConfig, int, error) {
	if strings.TrimSpace(rawURL) == "" {
		return nil, 0, errors.New("postgres: the URL is empty")
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error repeats the URL, password included
		}
		return nil, 0, fmt.Errorf("postgres: malformed URL: %v", err)
	}
	if u.Scheme != "postgres" && u.Scheme != "postgresql" {
		return nil, 0, fmt.Errorf("postgres: URL with the scheme %q: want the scheme postgres:// or postgresql://", u.Scheme)
	}
	if u.Opaque != "" || u.Host == "" && u.Path == "" {
		return nil, 0, errors.New("postgres: want a URL of the form postgres://user@host:port/database")
	}
	shown := u.Redacted()
	q := u.Query()
	poolSize := DefaultPostgresPool
	if v := q.Get("pool_max_conns"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return nil, 0, fmt.Errorf("postgres: URL %s: pool_max_conns must be a number from 1 to 1000, not %q", shown, v)
		}
		poolSize = n
		q.Del("pool_max_conns")
		u.RawQuery = q.Encode()
	}
	cfg, err := pgx.ParseConfig(u.String())
	if err != nil {
		msg := parsePrefix.ReplaceAllString(err.Error(), "") // it repeats the URL
		return nil, 0, fmt.Errorf("postgres: URL %s: %s", shown, redactPassword(msg, u))
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 5 * time.Second
	}
	if _, ok := cfg.RuntimeParams["application_name"]; !ok {
		cfg.RuntimeParams["application_name"] = "fedbroker"
	}
	return cfg, poolSize, nil
}

// parsePrefix starts pgx's errors about a connection string.
var parsePrefix = regexp.MustCompile("^cannot parse `[^`]*`: ")

// redactPassword removes the URL's password from msg, in clear and escaped.
func redactPassword(msg string, u *url.URL) string {
	pw, ok := u.User.Password()
	if !ok || pw == "" {
		return msg
	}
	userinfo := strings.TrimPrefix(url.UserPassword("", pw).String(), ":")
	for _, form := range []string{pw, url.QueryEscape(pw), url.PathEscape(pw), userinfo} {
		if form != "" {
			msg = strings.ReplaceAll(msg, form, "xxxxx")
		}
	}
	return msg
}
