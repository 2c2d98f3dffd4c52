package sqlstore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"hash/fnv"
	"strconv"

	"github.com/jackc/pgx/v5/pgconn"
)

// dialect is everything SQLite and PostgreSQL differ in. The statements are
// shared: both take $N placeholders (modernc.org/sqlite binds $N to the
// N-th argument), INSERT … ON CONFLICT … DO UPDATE … WHERE, and RETURNING
// (SQLite 3.35+); every time is an integer. The schema files differ in
// their column types.
type dialect struct {
	name string
	// forUpdate follows a SELECT whose rows the transaction will change:
	// " FOR UPDATE" on PostgreSQL; nothing on SQLite, where a write
	// transaction (BEGIN IMMEDIATE on the one writer connection) holds the
	// database's write lock from its start.
	forUpdate string
	// withWrite: the dialect runs a data-modifying statement inside WITH
	// (PostgreSQL), so that a write and its epoch tick go as one statement
	// in one round trip (Store.writeReturning); otherwise they share a
	// transaction.
	withWrite bool
	// tableExists returns 1 when the table $1 exists (in the search path).
	tableExists string
	// lockMigrations serializes migrations across processes, on the
	// connection that runs them; nil when the database's own write lock
	// does (SQLite).
	lockMigrations func(ctx context.Context, c *sql.Conn) (unlock func(), err error)
	// notifyKeys announces a new key set inside the transaction that
	// stored it; nil when subscribers are told in process after the commit.
	notifyKeys func(ctx context.Context, tx *sql.Tx, version int64) error
	// retryable reports an error that aborted a transaction which may
	// succeed when run again (a deadlock, a serialization failure).
	retryable func(error) bool
	// lockSession takes, until tx ends, a lock on the SSO session sid:
	// shared by a code's redemption around its ended-session check and
	// its family's start, exclusive by EndSessions before it looks for the
	// session's families, so that a family is either seen by the logout
	// or not started (see RedeemCode). nil when the database's write lock
	// already serializes the two (SQLite).
	lockSession func(ctx context.Context, tx *sql.Tx, sid string, exclusive bool) error
}

var sqliteDialect = &dialect{
	name:        "sqlite",
	forUpdate:   "",
	tableExists: `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = $1`,
	retryable:   func(error) bool { return false }, // busy_timeout already waited
}

// keysChannel is the NOTIFY channel of key-set changes.
const keysChannel = "fedbroker_keys"

// migrationLockID is the pg_advisory_lock key that serializes migrations.
const migrationLockID = 0x66656462726f6b72 // "fedbrokr"

var postgresDialect = &dialect{
	name:        "postgres",
	forUpdate:   " FOR UPDATE",
	withWrite:   true,
	tableExists: `SELECT CASE WHEN to_regclass($1) IS NULL THEN 0 ELSE 1 END`,
	lockMigrations: func(ctx context.Context, c *sql.Conn) (func(), error) {
		if _, err := c.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, int64(migrationLockID)); err != nil {
			return nil, err
		}
		return func() {
			// A failed unlock is released with the connection: close it.
			if _, err := c.ExecContext(context.Background(), `SELECT pg_advisory_unlock($1)`, int64(migrationLockID)); err != nil {
				_ = c.Raw(func(any) error { return driver.ErrBadConn })
			}
		}, nil
	},
	notifyKeys: func(ctx context.Context, tx *sql.Tx, version int64) error {
		_, err := tx.ExecContext(ctx, `SELECT pg_notify($1, $2)`, keysChannel, strconv.FormatInt(version, 10))
		return err
	},
	lockSession: func(ctx context.Context, tx *sql.Tx, sid string, exclusive bool) error {
		q := `SELECT pg_advisory_xact_lock_shared($1)`
		if exclusive {
			q = `SELECT pg_advisory_xact_lock($1)`
		}
		_, err := tx.ExecContext(ctx, q, sessionLockID(sid))
		return err
	},
	retryable: func(err error) bool {
		var pe *pgconn.PgError
		// 40001 serialization_failure, 40P01 deadlock_detected.
		return errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01")
	},
}

// sessionLockID is the pg_advisory_xact_lock key of session sid: a hash
// of the sid, so two sessions may share a key and then only wait for each
// other.
func sessionLockID(sid string) int64 {
	h := fnv.New64a()
	h.Write([]byte("fedbroker session\x00" + sid))
	return int64(h.Sum64())
}
