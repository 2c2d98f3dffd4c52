package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fedbroker/fedbroker/broker/storage"
	redisstore "github.com/fedbroker/fedbroker/broker/storage/redis"
	"github.com/fedbroker/fedbroker/broker/storage/redis/redistest"
	"github.com/fedbroker/fedbroker/broker/storage/sqlstore"
)

// withStorage is goodConfig with its storage section replaced.
func withStorage(t *testing.T, storageYAML string) string {
	t.Helper()
	cfg := strings.Replace(goodConfig, "storage:\n  type: memory\n", storageYAML, 1)
	return writeFile(t, t.TempDir(), "config.yaml", cfg)
}

func sqliteConfig(t *testing.T, db string) string {
	return withStorage(t, "storage:\n  type: sqlite\n  sqlite:\n    path: "+db+"\n")
}

// TestStorageMigrate: --dry-run lists the migrations a new database lacks
// and applies nothing; migrate applies them; a second run has nothing to
// do. A storage without a schema is refused with a reason.
func TestStorageMigrate(t *testing.T) {
	cfg := sqliteConfig(t, filepath.Join(t.TempDir(), "fedbroker.db"))
	code, out, errOut := run(t, "", "storage", "migrate", "--dry-run", "--config", cfg)
	if code != 0 || !strings.Contains(out, "would apply ") {
		t.Fatalf("migrate --dry-run = %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	code, again, _ := run(t, "", "storage", "migrate", "--dry-run", "--config", cfg)
	if code != 0 || again != out {
		t.Errorf("a second dry run = %d %q, want the same list (the first applied nothing): %q", code, again, out)
	}
	code, out, errOut = run(t, "", "storage", "migrate", "--config", cfg)
	if code != 0 || !strings.Contains(out, "applying ") || !strings.Contains(out, "up to date") {
		t.Fatalf("migrate = %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	code, out, _ = run(t, "", "storage", "migrate", "--config", cfg)
	if code != 0 || strings.Contains(out, "applying") || !strings.Contains(out, "sqlite schema is up to date") {
		t.Errorf("migrate again = %d %q, want up to date", code, out)
	}
	code, _, errOut = run(t, "", "storage", "migrate", "--config", writeFile(t, t.TempDir(), "memory.yaml", goodConfig))
	if code != 1 || !strings.Contains(errOut, "no schema") {
		t.Errorf("migrate on memory storage = %d %q, want 1 saying it has no schema", code, errOut)
	}
}

// TestStorageCopy moves a Redis broker's state to SQLite: the family keeps
// working with its current token, the key set and link arrive, and the
// copy can be run again.
func TestStorageCopy(t *testing.T) {
	ctx := context.Background()
	url := redistest.StartServer(t).URL()
	src, err := redisstore.Open(ctx, url, redisstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	now := time.Now()
	fam := storage.RefreshFamily{ID: "fam1", CreatedAt: now, LastUsed: now, IdleExpiry: now.Add(time.Hour), AbsoluteExpiry: now.Add(time.Hour),
		Grant: storage.Grant{ClientID: "app", Subject: "alice", AuthTime: now}}
	if err := src.CreateRefresh(ctx, fam, "fam1.secret"); err != nil {
		t.Fatal(err)
	}
	if _, err := src.PutKeys(ctx, []byte(`{"k":1}`), 0); err != nil {
		t.Fatal(err)
	}
	if _, _, err := src.CreateLink(ctx, storage.Link{Key: "email:alice@acme.com", Subject: "alice", Created: now}); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(t.TempDir(), "fedbroker.db")
	from := withStorage(t, "storage:\n  type: redis\n  redis:\n    url: "+url+"\n")
	to := sqliteConfig(t, db)
	for range 2 {
		code, out, errOut := run(t, "", "storage", "copy", "--from", from, "--to", to)
		if code != 0 || !strings.Contains(out, "copied") || !strings.Contains(out, "refresh families") {
			t.Fatalf("storage copy = %d\nstdout: %s\nstderr: %s", code, out, errOut)
		}
	}
	dst, err := sqlstore.OpenSQLite(ctx, db, sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if _, _, err := dst.RotateRefresh(ctx, "fam1.secret", "fam1.next", time.Now(), time.Hour, storage.Retry{}); err != nil {
		t.Errorf("the copied family does not rotate with its current token: %v", err)
	}
	if data, _, err := dst.GetKeys(ctx); err != nil || string(data) != `{"k":1}` {
		t.Errorf("copied key set = %s, %v", data, err)
	}
	if _, err := dst.GetLink(ctx, "email:alice@acme.com"); err != nil {
		t.Errorf("copied link: %v", err)
	}
	code, _, errOut := run(t, "", "storage", "copy", "--from", writeFile(t, t.TempDir(), "memory.yaml", goodConfig), "--to", to)
	if code != 1 || !strings.Contains(errOut, "memory store") {
		t.Errorf("copy from memory = %d %q, want 1 naming the memory store", code, errOut)
	}
}

// TestStorageDistrust starts a new epoch: a family from before is refused.
func TestStorageDistrust(t *testing.T) {
	ctx := context.Background()
	db := filepath.Join(t.TempDir(), "fedbroker.db")
	st, err := sqlstore.OpenSQLite(ctx, db, sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	fam := storage.RefreshFamily{ID: "fam1", CreatedAt: now, LastUsed: now, IdleExpiry: now.Add(time.Hour), AbsoluteExpiry: now.Add(time.Hour),
		Grant: storage.Grant{ClientID: "app", Subject: "alice", AuthTime: now}}
	if err := st.CreateRefresh(ctx, fam, "fam1.secret"); err != nil {
		t.Fatal(err)
	}
	_ = st.Close()
	time.Sleep(2 * time.Millisecond)
	code, out, errOut := run(t, "", "storage", "distrust", "--config", sqliteConfig(t, db))
	if code != 0 || !strings.Contains(out, "new storage epoch") {
		t.Fatalf("storage distrust = %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	st, err = sqlstore.OpenSQLite(ctx, db, sqlstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.GetRefresh(ctx, "fam1.secret"); err == nil {
		t.Errorf("a family from before the new epoch is still served")
	}
}
