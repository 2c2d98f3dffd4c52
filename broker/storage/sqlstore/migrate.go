package sqlstore

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"strconv"
)

// Migrations are the files migrations/<dialect>/NNNN_name.sql, applied in
// order, each in its own transaction (both dialects have transactional
// DDL) together with its row in schema_migrations. A migration is never
// edited once released: a change is a new file, in both dialects.
//
//go:embed migrations
var migrationFiles embed.FS

// migration is one schema change.
type migration struct {
	version int
	name    string // "0001_init"
	sql     string
}

var migrationName = regexp.MustCompile(`^([0-9]{4})_([a-z0-9_]+)\.sql$`)

// migrations returns the dialect's migrations in order.
func (d *dialect) migrations() ([]migration, error) {
	dir := path.Join("migrations", d.name)
	entries, err := fs.ReadDir(migrationFiles, dir)
	if err != nil {
		return nil, fmt.Errorf("%s: migrations: %w", d.name, err)
	}
	var out []migration
	for _, e := range entries {
		m := migrationName.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("%s: migration file %s: want NNNN_name.sql", d.name, e.Name())
		}
		v, _ := strconv.Atoi(m[1])
		b, err := fs.ReadFile(migrationFiles, path.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("%s: migration %s: %w", d.name, e.Name(), err)
		}
		if len(out) > 0 && out[len(out)-1].version == v {
			return nil, fmt.Errorf("%s: two migrations numbered %d", d.name, v)
		}
		out = append(out, migration{version: v, name: e.Name()[:len(e.Name())-len(".sql")], sql: string(b)})
	}
	return out, nil // fs.ReadDir sorts by name: by version
}

const createMigrationsTable = `CREATE TABLE IF NOT EXISTS schema_migrations (
	version    INTEGER PRIMARY KEY,
	name       TEXT NOT NULL,
	applied_ns BIGINT NOT NULL
)`

// appliedVersions returns the versions recorded in schema_migrations, or
// none when the table does not exist yet.
func (s *Store) appliedVersions(ctx context.Context, q querier) ([]int, error) {
	var exists int
	if err := q.QueryRowContext(ctx, s.d.tableExists, "schema_migrations").Scan(&exists); err != nil {
		return nil, err
	}
	if exists == 0 {
		return nil, nil
	}
	rows, err := q.QueryContext(ctx, `SELECT version FROM schema_migrations ORDER BY version`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []int
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// PendingMigrations returns the names of the migrations the database has
// not applied yet, in order, without applying anything (for `fedbroker
// storage migrate --dry-run`).
func (s *Store) PendingMigrations(ctx context.Context) ([]string, error) {
	all, err := s.d.migrations()
	if err != nil {
		return nil, err
	}
	applied, err := s.appliedVersions(ctx, s.r)
	if err != nil {
		return nil, s.unavailable("read schema_migrations", err)
	}
	var out []string
	for _, m := range all {
		if !slices.Contains(applied, m.version) {
			out = append(out, m.name)
		}
	}
	return out, nil
}

// Migrate applies the pending migrations, then ticks the epoch and starts
// the garbage collector if Open did not. Open calls it unless
// Options.NoMigrate. On PostgreSQL it holds an advisory lock meanwhile, so
// that replicas starting together migrate once: the others wait, then find
// nothing to do. On SQLite each migration's transaction takes the write
// lock and checks again that it is still pending.
func (s *Store) Migrate(ctx context.Context) error {
	all, err := s.d.migrations()
	if err != nil {
		return err
	}
	if err := s.migrate(ctx, all); err != nil {
		return err
	}
	return s.begin(ctx)
}

func (s *Store) migrate(ctx context.Context, all []migration) error {
	c, err := s.w.Conn(ctx)
	if err != nil {
		return s.unavailable("migrate", err)
	}
	defer c.Close()
	if s.d.lockMigrations != nil {
		unlock, err := s.d.lockMigrations(ctx, c)
		if err != nil {
			return s.unavailable("migrate: lock", err)
		}
		defer unlock()
	}
	if _, err := c.ExecContext(ctx, createMigrationsTable); err != nil {
		return s.unavailable("migrate: create schema_migrations", err)
	}
	applied, err := s.appliedVersions(ctx, c)
	if err != nil {
		return s.unavailable("migrate: read schema_migrations", err)
	}
	for _, v := range applied {
		if !slices.ContainsFunc(all, func(m migration) bool { return m.version == v }) {
			s.log.Warn("the database has a migration this version of fedbroker does not know: a newer version migrated it", "dialect", s.d.name, "version", v)
		}
	}
	for _, m := range all {
		if slices.Contains(applied, m.version) {
			continue
		}
		if err := s.apply(ctx, c, m); err != nil {
			return s.unavailable("migrate: "+m.name, err)
		}
	}
	return nil
}

// apply runs one migration and records it, in one transaction, unless
// another process recorded it meanwhile.
func (s *Store) apply(ctx context.Context, c *sql.Conn, m migration) error {
	tx, err := c.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations WHERE version = $1`, m.version).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	if _, err := tx.ExecContext(ctx, m.sql); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_ns) VALUES ($1, $2, $3)`,
		m.version, m.name, s.now().UnixNano()); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	s.log.Info("applied storage migration", "dialect", s.d.name, "migration", m.name)
	return nil
}
