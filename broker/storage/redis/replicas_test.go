package redis

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/fedbroker/fedbroker/broker/storage"
	"github.com/fedbroker/fedbroker/broker/storage/redis/redistest"
)

// TestReplicaKeys: a record and the index share one hash tag and expire
// with the records; listing prunes the index and skips a member whose
// record is gone.
func TestReplicaKeys(t *testing.T) {
	s := open(t, redistest.Start(t), Options{KeyPrefix: "rk"})
	defer s.Close()
	ctx := context.Background()
	now := time.Now()
	short, long := now.Add(150*time.Millisecond), now.Add(time.Hour)
	for id, until := range map[string]time.Time{"short": short, "long": long, "vanishes": long} {
		if err := s.PutReplica(ctx, storage.Replica{ID: id, Seen: now}, until); err != nil {
			t.Fatalf("PutReplica(%s) = %v", id, err)
		}
	}
	tag := "{rk:replicas}"
	for _, k := range []string{s.replicaKey("long"), s.replicaIndexKey()} {
		if !strings.HasPrefix(k, tag) {
			t.Errorf("key %q does not start with the hash tag %s", k, tag)
		}
		if ttl, err := s.c.PTTL(ctx, k).Result(); err != nil || ttl < 59*time.Minute || ttl > time.Hour+time.Second {
			t.Errorf("PTTL %s = %v, %v; want about an hour", k, ttl, err)
		}
	}
	if err := s.c.Del(ctx, s.replicaKey("vanishes")).Err(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	got, err := s.ListReplicas(ctx)
	if err != nil || len(got) != 1 || got[0].ID != "long" {
		t.Fatalf("ListReplicas() = %+v, %v; want only long", got, err)
	}
	// The expired member is pruned; the vanished one is only skipped.
	members, err := s.c.ZRange(ctx, s.replicaIndexKey(), 0, -1).Result()
	slices.Sort(members)
	if err != nil || strings.Join(members, ",") != "long,vanishes" {
		t.Errorf("index members = %v, %v; want long and vanishes", members, err)
	}
	if n, err := s.c.Exists(ctx, s.replicaKey("short")).Result(); err != nil || n != 0 {
		t.Errorf("EXISTS of the expired record = %d, %v; want 0", n, err)
	}
	// A past until deletes the record and its member.
	if err := s.PutReplica(ctx, storage.Replica{ID: "long"}, now.Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	if n, err := s.c.Exists(ctx, s.replicaKey("long")).Result(); err != nil || n != 0 {
		t.Errorf("EXISTS of a record put with a past until = %d, %v; want 0", n, err)
	}
	if n, err := s.c.ZScore(ctx, s.replicaIndexKey(), "long").Result(); !isNil(err) {
		t.Errorf("ZSCORE of a record put with a past until = %v, %v; want none", n, err)
	}
}

// TestReplicasNotSecurityWrites: writing and listing records neither
// ticks the storage epoch nor is exported.
func TestReplicasNotSecurityWrites(t *testing.T) {
	s := open(t, redistest.Start(t), Options{})
	defer s.Close()
	ctx := context.Background()
	epoch := func() string { return s.c.HGet(ctx, s.epochKey(), "n").Val() }
	put := func() {
		t.Helper()
		if err := s.PutReplica(ctx, storage.Replica{ID: "r", Seen: time.Now()}, time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if _, err := s.ListReplicas(ctx); err != nil {
			t.Fatal(err)
		}
	}
	put() // a connection's first use may tick (see installOnConnect)
	before := epoch()
	for range 3 {
		put()
	}
	if after := epoch(); after != before {
		t.Errorf("epoch counter moved from %s to %s on replica records", before, after)
	}
	err := s.Export(ctx, func(it storage.Item) error {
		t.Errorf("Export of a store holding only a replica record: got item %+v", it)
		return nil
	})
	if err != nil {
		t.Fatalf("Export() = %v", err)
	}
}

func TestReplicasCorruptOrUnavailable(t *testing.T) {
	t.Run("Corrupt", func(t *testing.T) {
		s := open(t, redistest.Start(t), Options{KeyPrefix: "corrupt"})
		defer s.Close()
		ctx := context.Background()
		if err := s.c.ZAdd(ctx, s.replicaIndexKey(), goredis.Z{Score: float64(time.Now().Add(time.Hour).UnixMilli()), Member: "x"}).Err(); err != nil {
			t.Fatal(err)
		}
		if err := s.c.Set(ctx, s.replicaKey("x"), "{not json", time.Hour).Err(); err != nil {
			t.Fatal(err)
		}
		if _, err := s.ListReplicas(ctx); !errors.Is(err, storage.ErrUnavailable) {
			t.Fatalf("ListReplicas with a corrupt record: error = %v, want ErrUnavailable", err)
		}
	})
	t.Run("ServerStopped", func(t *testing.T) {
		srv := redistest.StartServer(t)
		s := New(goredis.NewClient(&goredis.Options{Addr: srv.Addr(), MaxRetries: -1, DialerRetries: 1}), Options{})
		defer s.Close()
		srv.Stop()
		ctx := context.Background()
		err := s.PutReplica(ctx, storage.Replica{ID: "r"}, time.Now().Add(time.Hour))
		if !errors.Is(err, storage.ErrUnavailable) {
			t.Errorf("PutReplica on a stopped server: error = %v, want ErrUnavailable", err)
		}
		if _, err := s.ListReplicas(ctx); !errors.Is(err, storage.ErrUnavailable) {
			t.Errorf("ListReplicas on a stopped server: error = %v, want ErrUnavailable", err)
		}
	})
}
