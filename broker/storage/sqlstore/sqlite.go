package sqlstore

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	_ "modernc.org/sqlite" // the "sqlite" database/sql driver, pure Go
)

// SQLiteBusyTimeout is how long, in milliseconds, a SQLite connection waits
// for another connection's write lock before failing: what lets several
// Stores (or a CLI beside the broker) share one file.
const SQLiteBusyTimeout = 5000

// sqliteReaders is the size of the read-only connection pool.
const sqliteReaders = 4

// sqlitePragmas are the connection settings of both pools of a SQLite
// store.
var sqlitePragmas = "_busy_timeout=" + fmt.Sprint(SQLiteBusyTimeout) + "&_journal_mode=WAL&_synchronous=FULL&_foreign_keys=1"

// sqliteWriterDSN is the data source of the writer pool of the database
// at dsn (see sqliteDSN): write transactions take the write lock at BEGIN.
func sqliteWriterDSN(dsn string) string { return dsn + "?" + sqlitePragmas + "&_txlock=immediate" }

// OpenSQLite opens (creating it, with mode 0600, if absent) the SQLite
// database at path and migrates it unless opts.NoMigrate. The file must be
// on a local file system; see the package documentation for what SQLite
// guarantees. A path that cannot be a database (a directory, a missing
// directory, a file that is not SQLite, ":memory:") is an error naming the
// problem.
func OpenSQLite(ctx context.Context, path string, opts Options) (*Store, error) {
	dsn, err := sqliteDSN(path)
	if err != nil {
		return nil, err
	}
	w, err := sql.Open("sqlite", sqliteWriterDSN(dsn))
	if err != nil {
		return nil, fmt.Errorf("sqlite: %s: %w", path, err)
	}
	// One writer: every write transaction of this Store takes turns on it.
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxIdleTime(0)
	w.SetConnMaxLifetime(0)
	r, err := sql.Open("sqlite", dsn+"?"+sqlitePragmas+"&_query_only=1")
	if err != nil {
		_ = w.Close()
		return nil, fmt.Errorf("sqlite: %s: %w", path, err)
	}
	r.SetMaxOpenConns(sqliteReaders)
	r.SetMaxIdleConns(sqliteReaders)
	r.SetConnMaxIdleTime(0)
	s := newStore(sqliteDialect, opts)
	s.w, s.r = w, r
	if err := s.checkSQLite(ctx, path); err != nil {
		_ = s.Close()
		return nil, err
	}
	return s.start(ctx, opts)
}

// checkSQLite opens the writer and checks that the file took WAL mode and
// synchronous=FULL, which the durability guarantee rests on.
func (s *Store) checkSQLite(ctx context.Context, path string) error {
	var mode string
	if err := s.w.QueryRowContext(ctx, `PRAGMA journal_mode`).Scan(&mode); err != nil {
		return s.unavailable("open "+path, err)
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("sqlite: %s: journal_mode is %q, not WAL (is the file on a file system without shared memory, such as NFS?)", path, mode)
	}
	var sync int
	if err := s.w.QueryRowContext(ctx, `PRAGMA synchronous`).Scan(&sync); err != nil {
		return s.unavailable("open "+path, err)
	}
	if sync != 2 {
		return fmt.Errorf("sqlite: %s: synchronous is %d, not FULL (2)", path, sync)
	}
	if err := s.r.PingContext(ctx); err != nil {
		return s.unavailable("open "+path, err)
	}
	return nil
}

// sqliteHeader starts every SQLite database file.
var sqliteHeader = []byte("SQLite format 3\x00")

// sqliteDSN checks path, creates the file if absent (mode 0600: it holds
// sealed keys and the hashes of live tokens) and returns its file: URI
// without the query.
func sqliteDSN(path string) (string, error) {
	if strings.TrimSpace(path) == "" {
		return "", errors.New("sqlite: the database path is empty")
	}
	if path == ":memory:" || strings.HasPrefix(path, "file:") || strings.ContainsRune(path, 0) {
		return "", fmt.Errorf("sqlite: %q is not a file path (the SQLite store is durable; use the memory store for a store in memory)", path)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("sqlite: %s: %w", path, err)
	}
	dir := filepath.Dir(abs)
	switch fi, err := os.Stat(dir); {
	case errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("sqlite: %s: the directory %s does not exist", path, dir)
	case err != nil:
		return "", fmt.Errorf("sqlite: %s: %w", path, err)
	case !fi.IsDir():
		return "", fmt.Errorf("sqlite: %s: %s is not a directory", path, dir)
	}
	if fi, err := os.Stat(abs); err == nil && fi.IsDir() {
		return "", fmt.Errorf("sqlite: %s is a directory, not a database file", path)
	}
	f, err := os.OpenFile(abs, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return "", fmt.Errorf("sqlite: cannot open the database file: %w", err)
	}
	head := make([]byte, len(sqliteHeader))
	n, err := io.ReadFull(f, head)
	_ = f.Close()
	switch {
	case n == 0 && (err == io.EOF || err == nil):
		// New (or empty) file: SQLite initializes it.
	case err != nil && err != io.ErrUnexpectedEOF:
		return "", fmt.Errorf("sqlite: cannot read the database file: %w", err)
	case !bytes.Equal(head[:n], sqliteHeader):
		return "", fmt.Errorf("sqlite: %s exists and is not a SQLite database", path)
	}
	u := url.URL{Path: abs}
	return "file:" + u.EscapedPath(), nil
}
