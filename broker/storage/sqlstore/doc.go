// Package sqlstore is the durable SQL storage backend: one implementation of
// storage.Storage on database/sql with two dialects, SQLite
// (modernc.org/sqlite, pure Go, no cgo) and PostgreSQL (github.com/jackc/pgx/v5
// through its database/sql adapter). The dialect type (dialect.go) holds
// everything the two differ in: row locks, the migration lock, NOTIFY, which
// errors are worth a retry, and the schema files; the statements themselves
// are shared (both accept $N placeholders, INSERT … ON CONFLICT and
// RETURNING).
//
// # What each dialect guarantees
//
// SQLite is for ONE node. The database is one file (plus its -wal and -shm
// files beside it) in WAL mode with synchronous=FULL: a write returns only
// once its transaction is in the write-ahead log on disk, so a crash of the
// process or the machine loses nothing that was acknowledged. A Store writes
// through one connection (transactions start with BEGIN IMMEDIATE), so writes
// are serialized; reads run on a small pool of read-only connections and
// never wait for writers. Several Stores (or processes) on one file work —
// the busy timeout (5 s) makes them take turns — but that is for tools such
// as `fedbroker storage migrate`, not for replicas: the file must be on a
// local disk (never NFS), key-set notifications stay within one Store, and
// two brokers behind a load balancer each need their own storage.
//
// PostgreSQL is for fleets. Every replica opens the same database; atomic
// operations are single statements or READ COMMITTED transactions that lock
// the rows they change (SELECT … FOR UPDATE), retried on a deadlock or
// serialization failure, so code redemption, refresh rotation, key-set
// compare-and-swap, leases and first-writer-wins links hold across replicas.
// The hot security writes (a code redemption, a rotation of the current
// token, a revocation, a replay record, a logout) and their epoch tick are
// one statement (WITH w AS (write), t AS (tick) …): one round trip.
// Durability is PostgreSQL's: with its defaults (fsync, synchronous_commit
// on) a committed write survives a server crash; with a synchronous standby
// it survives a failover. Key-set changes are announced with NOTIFY in the
// transaction that stores them and heard on one LISTEN connection per Store,
// re-established after a lost connection. When PostgreSQL is down every
// operation fails with storage.ErrUnavailable; the pool reconnects by itself
// when it is back.
//
// # Common to both
//
// Records are JSON (as in the other backends), with the expiry and the
// fields a statement compares in their own columns; times are Unix
// nanoseconds. Secrets (codes, refresh tokens, session ids) are stored only
// as storage.Hash. Expired rows behave as absent at once and are deleted by
// a garbage collector that runs every Options.GCInterval in batches of at
// most 1,000 rows per statement. Every failure wraps storage.ErrUnavailable;
// a row that does not decode is logged and is ErrUnavailable, never
// ErrNotFound.
//
// A refresh family is one row of constant size: the grant, its times, the
// current token's hash and a rotation count, plus what a retry needs (the
// replaced token's hash, the rotation time and the sealed successor); a
// revoked family becomes a small tombstone row. See RotateRefresh.
//
// # Epoch
//
// A SQL store is durable, but a restore from a backup (or a failover to a
// replica that missed writes) rolls decisions back. The table epoch holds
// the storage epoch (storage.Epoch): every security write — a rotation, a
// code redemption, a revocation, a replay record, a logout — advances its
// counter in the same transaction, as do Open, Heartbeat and, on PostgreSQL,
// every new connection. A counter found below what this Store saw, or an
// epoch row that vanished, starts a new epoch and everything from before is
// refused (storage.EpochTracker). A restore done while every broker is
// stopped cannot be detected this way (no running Store remembers the
// counter); after such a restore, call Store.StartEpoch once before the
// brokers start, so that nothing from before the restore is trusted.
package sqlstore
