package redis

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/fedbroker/fedbroker/broker/storage"
	"github.com/fedbroker/fedbroker/broker/storage/redis/redistest"
	"github.com/fedbroker/fedbroker/broker/storage/storagetest"
)

// familyBytes sums MEMORY USAGE (SAMPLES 0: every element counted) over
// the keys of family id, and counts those keys.
func familyBytes(t *testing.T, s *Store, id string) (bytes int64, keys int) {
	t.Helper()
	ctx := context.Background()
	for _, k := range s.famKeys(id) {
		n, err := s.c.MemoryUsage(ctx, k, 0).Result()
		if isNil(err) {
			continue
		}
		if err != nil {
			t.Fatalf("MEMORY USAGE %s: %v", k, err)
		}
		bytes += n
		keys++
	}
	return bytes, keys
}

// TestRefreshFamilySizeConstant: 1,000 rotations leave a family's Redis
// footprint where one rotation left it (no set of rotated tokens). Run with
// -v to print the bytes per family recorded in BENCHMARKS.md.
func TestRefreshFamilySizeConstant(t *testing.T) {
	s := open(t, redistest.Start(t), Options{KeyPrefix: "size"})
	defer s.Close()
	f1, _ := storagetest.RotateMany(t, s, 1)
	f1000, _ := storagetest.RotateMany(t, s, 1000)
	one, k1 := familyBytes(t, s, f1.ID)
	many, k1000 := familyBytes(t, s, f1000.ID)
	t.Logf("redis: bytes per refresh family (MEMORY USAGE, %d keys) after 1 rotation: %d; after 1000 rotations (%d keys): %d", k1, one, k1000, many)
	if k1000 != k1 || many > one+64 {
		t.Fatalf("after 1000 rotations: %d keys, %d bytes; after 1: %d keys, %d bytes; want the same", k1000, many, k1, one)
	}
}

// TestRefreshFamilySizeListpack: with hash-max-listpack-value raised to
// 1024 (docs/operations.md, "Memory"), Redis keeps a family's hash as a
// listpack instead of a hashtable, which takes less memory; the test
// measures both on servers of its own and logs them for BENCHMARKS.md.
func TestRefreshFamilySizeListpack(t *testing.T) {
	size := func(args ...string) (int64, string) {
		s := open(t, redistest.StartServer(t, args...).URL(), Options{KeyPrefix: "size"})
		defer s.Close()
		f, _ := storagetest.RotateMany(t, s, 1)
		n, _ := familyBytes(t, s, f.ID)
		enc, err := s.c.ObjectEncoding(context.Background(), s.famKeys(f.ID)[0]).Result()
		if err != nil {
			t.Fatalf("OBJECT ENCODING: %v", err)
		}
		return n, enc
	}
	def, defEnc := size()
	lp, lpEnc := size("--hash-max-listpack-value", "1024")
	t.Logf("redis: bytes per refresh family: %d (%s, default settings); %d (%s, hash-max-listpack-value 1024)", def, defEnc, lp, lpEnc)
	if defEnc != "hashtable" || lpEnc != "listpack" {
		t.Fatalf("encodings %s and %s, want hashtable and listpack", defEnc, lpEnc)
	}
	if lp >= def {
		t.Fatalf("a family as a listpack takes %d bytes, as a hashtable %d: want less", lp, def)
	}
}

// TestLegacyRotatedSetDropped: a set of rotated token hashes written by an
// earlier version is deleted at the family's next rotation, and a token in
// it is still reuse.
func TestLegacyRotatedSetDropped(t *testing.T) {
	s := open(t, redistest.Start(t), Options{KeyPrefix: "legacy"})
	defer s.Close()
	ctx := context.Background()
	f, toks := storagetest.RotateMany(t, s, 1)
	set := s.famKeys(f.ID)[1]
	if err := s.c.SAdd(ctx, set, "h1", "h2").Err(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.RotateRefresh(ctx, toks[1], f.ID+".next", time.Now(), time.Hour, storage.Retry{}); err != nil {
		t.Fatalf("RotateRefresh = %v", err)
	}
	if n, err := s.c.Exists(ctx, set).Result(); err != nil || n != 0 {
		t.Fatalf("legacy rotated set after a rotation: EXISTS = %d, %v; want 0", n, err)
	}
	if _, _, err := s.RotateRefresh(ctx, toks[0], f.ID+".again", time.Now(), time.Hour, storage.Retry{}); !errors.Is(err, storage.ErrReused) {
		t.Fatalf("RotateRefresh of a rotated token = %v, want ErrReused", err)
	}
}

// TestPendingLoginSize: what one pending login (an auth request between
// /authorize and the connector's callback) costs in Redis, for
// BENCHMARKS.md; the bound catches a record that grows by accident.
func TestPendingLoginSize(t *testing.T) {
	s := open(t, redistest.Start(t), Options{KeyPrefix: "size"})
	defer s.Close()
	ctx := context.Background()
	r := storage.AuthRequest{
		ID:                  "f3b1c9d0a4e84b0f9c2d7e6a5b4c3d2e",
		ClientID:            "app",
		RedirectURI:         "https://app.example.com/callback",
		Scopes:              []string{"openid", "email", "profile", "groups", "offline_access"},
		State:               "af0ifjsldkj-1c2d3e4f",
		Nonce:               "n-0S6_WzA2Mj4f5e6d",
		CodeChallenge:       "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
		CodeChallengeMethod: "S256",
		MaxAge:              -1,
		ConnectorID:         "google",
		ConnectorState:      make([]byte, 160), // the OIDC connector's sealed state, nonce and PKCE verifier
		BrowserBinding:      storage.Hash("browser-cookie"),
		Expiry:              time.Now().Add(10 * time.Minute),
	}
	if err := s.CreateAuthRequest(ctx, r); err != nil {
		t.Fatal(err)
	}
	rec, err := encode(r)
	if err != nil {
		t.Fatal(err)
	}
	n, err := s.c.MemoryUsage(ctx, s.authReqKey(r.ID), 0).Result()
	if err != nil {
		t.Fatalf("MEMORY USAGE: %v", err)
	}
	t.Logf("redis: bytes per pending login (MEMORY USAGE): %d; its JSON: %d", n, len(rec))
	if n > 1024 {
		t.Fatalf("a pending login takes %d bytes in Redis, want at most 1,024", n)
	}
}
