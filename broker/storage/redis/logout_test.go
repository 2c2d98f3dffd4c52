package redis

import (
	"context"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/fedbroker/fedbroker/broker/storage"
	"github.com/fedbroker/fedbroker/broker/storage/redis/redistest"
	"github.com/fedbroker/fedbroker/broker/storage/storagetest"
)

// TestLogoutEpoch: after an operator's new epoch, sessions and families
// from before are not listed, found, touched or ended.
func TestLogoutEpoch(t *testing.T) {
	ctx := context.Background()
	url := redistest.StartServer(t).URL()
	a := open(t, url, Options{})
	defer a.Close()
	fx := storagetest.NewLogoutEpochFixture(t, a)
	op := open(t, url, Options{})
	defer op.Close()
	time.Sleep(2 * time.Millisecond)
	if _, err := op.StartEpoch(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	fx.WantForgotten(t, a)
}

// TestSessionIndexes: a session is indexed under its subject, upstream
// account and upstream session, with bounded key names, and ending or
// deleting it removes its entries.
func TestSessionIndexes(t *testing.T) {
	ctx := context.Background()
	srv := redistest.StartServer(t)
	s := open(t, srv.URL(), Options{KeyPrefix: "p"})
	defer s.Close()
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
	defer c.Close()
	now := time.Now()
	long := strings.Repeat("u", 5000)
	mk := func(id, pub string) storage.Session {
		return storage.Session{
			ID: id, PublicID: pub, Subject: "alice", ConnectorID: "google", UpstreamSID: "x1",
			Grant:    storage.Grant{Subject: "alice", ConnectorID: "google", UpstreamSubject: long, SessionID: pub},
			AuthTime: now, Created: now, Expiry: now.Add(time.Hour),
		}
	}
	idx := []string{s.subjSessKey("alice"), s.upSubKey("google", long), s.upSIDKey("google", "x1")}
	for _, k := range idx[1:] {
		if len(k) > 100 {
			t.Errorf("index key %q is %d bytes long, want it bounded", k[:40], len(k))
		}
	}
	count := func() []int64 {
		var out []int64
		for _, k := range idx {
			n, err := c.ZCard(ctx, k).Result()
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, n)
		}
		return out
	}
	for _, se := range []storage.Session{mk("s1", "p1"), mk("s2", "p2")} {
		if err := s.CreateSession(ctx, se); err != nil {
			t.Fatal(err)
		}
	}
	if got := count(); got[0] != 2 || got[1] != 2 || got[2] != 2 {
		t.Fatalf("index sizes after two sessions = %v, want 2 each", got)
	}
	if err := s.DeleteSession(ctx, "s1"); err != nil {
		t.Fatal(err)
	}
	if got := count(); got[0] != 1 || got[1] != 1 || got[2] != 1 {
		t.Fatalf("index sizes after a deletion = %v, want 1 each", got)
	}
	if _, _, err := s.EndSessions(ctx, "alice", "", now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got := count(); got[0] != 0 || got[1] != 0 || got[2] != 0 {
		t.Fatalf("index sizes after the end = %v, want 0 each", got)
	}
	// A stale entry (its session gone behind the store's back) is skipped.
	if err := s.CreateSession(ctx, mk("s3", "p3")); err != nil {
		t.Fatal(err)
	}
	if err := c.Del(ctx, s.sessKey(storage.Hash("s3"))).Err(); err != nil {
		t.Fatal(err)
	}
	if got, err := s.UpstreamSessions(ctx, "google", long, "x1"); err != nil || len(got) != 0 {
		t.Fatalf("UpstreamSessions with a stale entry = %v, %v; want none", got, err)
	}
	if got, err := s.ListSessions(ctx, "alice"); err != nil || len(got) != 0 {
		t.Fatalf("ListSessions with a stale entry = %v, %v; want none", got, err)
	}
}
