package sqlstore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/stdlib"

	"github.com/fedbroker/fedbroker/broker/storage"
	"github.com/fedbroker/fedbroker/broker/storage/sqlstore/pgtest"
)

// txCounter counts what a Store's writer does on its connections:
// transactions begun, committed and rolled back, and statements run
// outside a transaction (each one a transaction of its own).
type txCounter struct {
	begins, commits, rollbacks, outside atomic.Int64
}

func (c *txCounter) reset() {
	c.begins.Store(0)
	c.commits.Store(0)
	c.rollbacks.Store(0)
	c.outside.Store(0)
}

func (c *txCounter) String() string {
	return fmt.Sprintf("%d begun, %d committed, %d rolled back, %d statements outside a transaction",
		c.begins.Load(), c.commits.Load(), c.rollbacks.Load(), c.outside.Load())
}

// countingConnector opens the connections of a database/sql pool whose
// transactions and statements c counts.
type countingConnector struct {
	c       *txCounter
	drv     driver.Driver
	connect func(ctx context.Context) (driver.Conn, error)
}

func (k *countingConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := k.connect(ctx)
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: conn, c: k.c}, nil
}

func (k *countingConnector) Driver() driver.Driver { return k.drv }

// countingConn forwards to the driver's connection, counting.
// database/sql uses a connection from one goroutine at a time.
type countingConn struct {
	driver.Conn
	c    *txCounter
	inTx bool
}

var (
	_ driver.ConnBeginTx        = (*countingConn)(nil)
	_ driver.ConnPrepareContext = (*countingConn)(nil)
	_ driver.ExecerContext      = (*countingConn)(nil)
	_ driver.QueryerContext     = (*countingConn)(nil)
	_ driver.NamedValueChecker  = (*countingConn)(nil)
	_ driver.SessionResetter    = (*countingConn)(nil)
	_ driver.Validator          = (*countingConn)(nil)
	_ driver.Pinger             = (*countingConn)(nil)
)

func (cc *countingConn) statement() {
	if !cc.inTx {
		cc.c.outside.Add(1)
	}
}

func (cc *countingConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	cc.c.begins.Add(1)
	var tx driver.Tx
	var err error
	if b, ok := cc.Conn.(driver.ConnBeginTx); ok {
		tx, err = b.BeginTx(ctx, opts)
	} else {
		//lint:ignore SA1019 database/sql falls back to it too
		tx, err = cc.Conn.Begin()
	}
	if err != nil {
		return nil, err
	}
	cc.inTx = true
	return &countingTx{Tx: tx, cc: cc}, nil
}

func (cc *countingConn) Begin() (driver.Tx, error) {
	return cc.BeginTx(context.Background(), driver.TxOptions{})
}

func (cc *countingConn) Prepare(query string) (driver.Stmt, error) {
	return cc.PrepareContext(context.Background(), query)
}

func (cc *countingConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	cc.statement()
	if p, ok := cc.Conn.(driver.ConnPrepareContext); ok {
		return p.PrepareContext(ctx, query)
	}
	return cc.Conn.Prepare(query)
}

func (cc *countingConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	e, ok := cc.Conn.(driver.ExecerContext)
	if !ok {
		return nil, driver.ErrSkip
	}
	cc.statement()
	return e.ExecContext(ctx, query, args)
}

func (cc *countingConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	q, ok := cc.Conn.(driver.QueryerContext)
	if !ok {
		return nil, driver.ErrSkip
	}
	cc.statement()
	return q.QueryContext(ctx, query, args)
}

func (cc *countingConn) CheckNamedValue(nv *driver.NamedValue) error {
	if c, ok := cc.Conn.(driver.NamedValueChecker); ok {
		return c.CheckNamedValue(nv)
	}
	return driver.ErrSkip
}

func (cc *countingConn) ResetSession(ctx context.Context) error {
	if r, ok := cc.Conn.(driver.SessionResetter); ok {
		return r.ResetSession(ctx)
	}
	return nil
}

func (cc *countingConn) IsValid() bool {
	if v, ok := cc.Conn.(driver.Validator); ok {
		return v.IsValid()
	}
	return true
}

func (cc *countingConn) Ping(ctx context.Context) error {
	if p, ok := cc.Conn.(driver.Pinger); ok {
		return p.Ping(ctx)
	}
	return nil
}

type countingTx struct {
	driver.Tx
	cc *countingConn
}

func (t *countingTx) Commit() error {
	t.cc.inTx = false
	t.cc.c.commits.Add(1)
	return t.Tx.Commit()
}

func (t *countingTx) Rollback() error {
	t.cc.inTx = false
	t.cc.c.rollbacks.Add(1)
	return t.Tx.Rollback()
}

// countingStore opens a store of backend b whose writer counts into c:
// its writer pool is replaced by one of the same connections, wrapped.
// The garbage collector does not run meanwhile.
func countingStore(t *testing.T, name string, c *txCounter) *Store {
	t.Helper()
	opts := Options{GCInterval: time.Hour}
	var (
		s  *Store
		db *sql.DB
	)
	switch name {
	case "sqlite":
		p := sqlitePath(t)
		s = openSQLite(t, p, opts)
		dsn, err := sqliteDSN(p)
		if err != nil {
			t.Fatal(err)
		}
		dsn = sqliteWriterDSN(dsn) // as OpenSQLite opens its writer
		drv := s.w.Driver()
		db = sql.OpenDB(&countingConnector{c: c, drv: drv, connect: func(context.Context) (driver.Conn, error) { return drv.Open(dsn) }})
		db.SetMaxOpenConns(1)
		old := s.w
		s.w = db
		if err := old.Close(); err != nil {
			t.Fatal(err)
		}
	case "postgres":
		u := pgtest.Start(t)
		s = openPostgres(t, u, opts)
		cfg, _, err := parsePostgresURL(u)
		if err != nil {
			t.Fatal(err)
		}
		conn := stdlib.GetConnector(*cfg, stdlib.OptionAfterConnect(s.afterConnect))
		db = sql.OpenDB(&countingConnector{c: c, drv: conn.Driver(), connect: conn.Connect})
		old := s.w
		s.w, s.r = db, db
		if err := old.Close(); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// TestGrantsOneTransaction: RedeemCode and RefreshGrant each run as one
// database transaction, whatever they answer, and no statement outside it.
func TestGrantsOneTransaction(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		var c txCounter
		s := countingStore(t, b.name, &c)
		ctx := testCtx(t)
		now := time.Now().Round(0)

		// The counter sees the writer's statements.
		c.reset()
		grant := storage.Grant{ClientID: "app", Subject: "alice", Scopes: []string{"openid", "offline_access"}, ConnectorID: "local", AuthTime: now}
		newCode := func(sid string) string {
			t.Helper()
			g := grant
			g.SessionID = sid
			code := storage.Hash(fmt.Sprint(time.Now().UnixNano()))
			if err := s.CreateCode(ctx, code, storage.AuthCode{ClientID: "app", RedirectURI: "https://app/cb", Grant: g, Expiry: now.Add(time.Minute), Created: now}); err != nil {
				t.Fatal(err)
			}
			return code
		}
		cc := newCode("sid-1")
		if c.outside.Load() == 0 {
			t.Fatalf("CreateCode: the counting writer saw nothing (%v): it is not the store's", &c)
		}
		one := func(what string, err error, want error) {
			t.Helper()
			if !errors.Is(err, want) || (want == nil && err != nil) {
				t.Fatalf("%s = %v, want %v", what, err, want)
			}
			if c.begins.Load() != 1 || c.commits.Load() != 1 || c.rollbacks.Load() != 0 || c.outside.Load() != 0 {
				t.Fatalf("%s: %v; want one transaction, committed, and nothing else", what, &c)
			}
			c.reset()
		}
		redemption := func(fid string) storage.Redemption {
			return storage.Redemption{Now: now, EndedSessions: "ended", FamilyID: fid, RefreshToken: fid + ".first",
				RefreshIdle: time.Hour, RefreshAbsolute: 24 * time.Hour}
		}

		r := redemption("fam1")
		r.Proof = storage.Mark{Namespace: "proof", ID: "p1", Until: now.Add(time.Minute)}
		c.reset()
		red, err := s.RedeemCode(ctx, cc, r)
		one("RedeemCode", err, nil)
		if red.Family == nil || red.Code.FamilyID != "fam1" {
			t.Fatalf("RedeemCode = %+v, want a family fam1 started", red)
		}
		red, err = s.RedeemCode(ctx, cc, redemption("fam2"))
		one("RedeemCode(replay)", err, storage.ErrAlreadyUsed)
		if red.Code.FamilyID != "fam1" {
			t.Fatalf("RedeemCode(replay) family id = %q, want fam1", red.Code.FamilyID)
		}
		cc = newCode("")
		c.reset()
		_, err = s.RedeemCode(ctx, cc, r)
		one("RedeemCode(proof seen)", err, storage.ErrSeen)
		_, err = s.RedeemCode(ctx, "unknown", redemption("fam3"))
		one("RedeemCode(unknown)", err, storage.ErrNotFound)

		if _, err := s.MarkSeen(ctx, "ended", "sid-2", now.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		cc = newCode("sid-2")
		c.reset()
		red, err = s.RedeemCode(ctx, cc, redemption("fam4"))
		one("RedeemCode(session ended)", err, nil)
		if !red.SessionEnded || red.Family != nil {
			t.Fatalf("RedeemCode(session ended) = %+v, want SessionEnded and no family", red)
		}

		rot := func(old, next string) storage.Rotation {
			return storage.Rotation{Old: old, Next: next, Now: time.Now(), Idle: time.Hour,
				ClientID: "app", Connectors: []string{"local"}}
		}
		_, _, err = s.RefreshGrant(ctx, rot("fam1.first", "fam1.second"))
		one("RefreshGrant", err, nil)
		unchecked := rot("fam1.second", "fam1.third")
		unchecked.ClientID = "other"
		_, _, err = s.RefreshGrant(ctx, unchecked)
		one("RefreshGrant(unchecked)", err, storage.ErrUnchecked)
		withRetry := rot("fam1.second", "fam1.third")
		withRetry.Retry = storage.Retry{Window: time.Minute, SealedNext: []byte("sealed third")}
		withRetry.Proof = storage.Mark{Namespace: "proof", ID: "p2", Until: now.Add(time.Minute)}
		_, _, err = s.RefreshGrant(ctx, withRetry)
		one("RefreshGrant(with retry and proof)", err, nil)
		retry := rot("fam1.second", "fam1.other")
		retry.Retry = storage.Retry{Window: time.Minute, SealedNext: []byte("sealed other")}
		_, sealed, err := s.RefreshGrant(ctx, retry)
		one("RefreshGrant(retry)", err, storage.ErrRetry)
		if string(sealed) != "sealed third" {
			t.Fatalf("RefreshGrant(retry) sealed = %q, want the kept successor", sealed)
		}
		_, _, err = s.RefreshGrant(ctx, rot("fam1.first", "fam1.other"))
		one("RefreshGrant(reuse)", err, storage.ErrReused)
		_, _, err = s.RefreshGrant(ctx, rot("fam1.third", "fam1.other"))
		one("RefreshGrant(revoked family)", err, storage.ErrNotFound)
		_, _, err = s.RefreshGrant(ctx, withRetry)
		one("RefreshGrant(proof seen)", err, storage.ErrSeen)
		malformed := rot("malformed", "fam1.other")
		malformed.Proof = storage.Mark{Namespace: "proof", ID: "p3", Until: now.Add(time.Minute)}
		_, _, err = s.RefreshGrant(ctx, malformed)
		one("RefreshGrant(malformed, with a proof)", err, storage.ErrNotFound)
	})
}
