package redis

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/fedbroker/fedbroker/broker/storage"
	"github.com/fedbroker/fedbroker/broker/storage/redis/redistest"
	"github.com/fedbroker/fedbroker/broker/storage/storagetest"
)

func open(t testing.TB, url string, opts Options) *Store {
	t.Helper()
	s, err := Open(context.Background(), url, opts)
	if err != nil {
		t.Fatalf("Open(%q) = %v", url, err)
	}
	return s
}

func TestConformanceDefaultPrefix(t *testing.T) {
	// The default prefix needs an empty database per store.
	storagetest.Run(t, func(t *testing.T) storage.Storage {
		return open(t, redistest.StartServer(t).URL(), Options{})
	})
}

func TestConformanceKeyPrefix(t *testing.T) {
	// Many stores with their own prefixes share one database and must not
	// see each other's records.
	url := redistest.Start(t)
	storagetest.Run(t, func(t *testing.T) storage.Storage {
		return open(t, url, Options{KeyPrefix: "tenant/" + t.Name()})
	})
}

// TestConformanceCluster runs the suite on a one-node Redis Cluster, which
// refuses any script or command whose keys span hash slots (CROSSSLOT).
func TestConformanceCluster(t *testing.T) {
	srv := redistest.StartServer(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
	c := goredis.NewClient(&goredis.Options{Addr: srv.Addr()})
	defer c.Close()
	ctx := context.Background()
	slots := make([]int, 16384)
	for i := range slots {
		slots[i] = i
	}
	if err := c.ClusterAddSlots(ctx, slots...).Err(); err != nil {
		t.Fatalf("CLUSTER ADDSLOTS: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, err := c.ClusterInfo(ctx).Result()
		if err == nil && strings.Contains(info, "cluster_state:ok") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster did not become ready: %q, %v", info, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	url := "redis-cluster://" + srv.Addr()
	storagetest.Run(t, func(t *testing.T) storage.Storage {
		return open(t, url, Options{KeyPrefix: "c/" + t.Name()})
	})
	// Sanity: the server really is a cluster that refuses cross-slot scripts.
	err := c.Eval(ctx, "return redis.call('MGET', KEYS[1], KEYS[2])", []string{"{a}x", "{b}y"}).Err()
	if err == nil || !strings.Contains(err.Error(), "CROSSSLOT") {
		t.Fatalf("cross-slot script on the test cluster: error = %v, want CROSSSLOT", err)
	}
}

func TestNoClearSecrets(t *testing.T) {
	url := redistest.Start(t)
	s := open(t, url, Options{})
	defer s.Close()
	secrets := storagetest.WriteSecrets(t, s)
	dump := dumpAll(t, url)
	if !strings.Contains(dump, storage.Hash(secrets[0])) {
		t.Fatalf("dump does not contain the code's hash; the inspection sees nothing:\n%s", dump)
	}
	for _, sec := range secrets {
		if strings.Contains(dump, sec) {
			t.Errorf("stored form contains the clear secret %q:\n%s", sec, dump)
		}
	}
}

// dumpAll renders every key and value in the database.
func dumpAll(t *testing.T, url string) string {
	t.Helper()
	o, err := goredis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	c := goredis.NewClient(o)
	defer c.Close()
	ctx := context.Background()
	var b strings.Builder
	iter := c.Scan(ctx, 0, "*", 100).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		b.WriteString(k + " => ")
		typ, err := c.Type(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		var v any
		switch typ {
		case "string":
			v, err = c.Get(ctx, k).Result()
		case "hash":
			v, err = c.HGetAll(ctx, k).Result()
		case "set":
			v, err = c.SMembers(ctx, k).Result()
		case "zset":
			v, err = c.ZRange(ctx, k, 0, -1).Result()
		default:
			t.Fatalf("key %s has unexpected type %s", k, typ)
		}
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString(strings.TrimSpace(strings.ReplaceAll(strings.ReplaceAll(toString(v), "\n", " "), "\r", " ")) + "\n")
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func toString(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case []string:
		return strings.Join(v, " ")
	case map[string]string:
		var parts []string
		for k, x := range v {
			parts = append(parts, k+"="+x)
		}
		return strings.Join(parts, " ")
	}
	return ""
}

func TestUnavailable(t *testing.T) {
	t.Run("ServerStopped", func(t *testing.T) {
		srv := redistest.StartServer(t)
		// No retries, so that each failing call returns at once.
		s := New(goredis.NewClient(&goredis.Options{Addr: srv.Addr(), MaxRetries: -1, DialerRetries: 1}), Options{})
		defer s.Close()
		if err := s.Ping(context.Background()); err != nil {
			t.Fatalf("Ping before stop = %v", err)
		}
		srv.Stop()
		storagetest.RunUnavailable(t, s)
		if _, err := s.MaxmemoryPolicy(context.Background()); !errors.Is(err, storage.ErrUnavailable) {
			t.Errorf("MaxmemoryPolicy on a stopped server: error = %v, want ErrUnavailable", err)
		}
		// The store recovers once the server is back.
		srv.Restart()
		deadline := time.Now().Add(10 * time.Second)
		for {
			err := s.Ping(context.Background())
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("Ping after restart = %v, want nil within 10s", err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if ok, err := s.MarkSeen(context.Background(), "ns", "id", time.Now().Add(time.Minute)); err != nil || !ok {
			t.Fatalf("MarkSeen on the restarted (empty) server = %v, %v, want true, nil", ok, err)
		}
	})
	t.Run("ClientClosed", func(t *testing.T) {
		s := open(t, redistest.Start(t), Options{})
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		storagetest.RunUnavailable(t, s)
	})
	t.Run("OpenUnreachable", func(t *testing.T) {
		srv := redistest.StartServer(t)
		srv.Stop()
		_, err := Open(context.Background(), srv.URL(), Options{})
		if !errors.Is(err, storage.ErrUnavailable) {
			t.Fatalf("Open of a stopped server: error = %v, want ErrUnavailable", err)
		}
	})
}

func TestCorruptRecordIsUnavailable(t *testing.T) {
	url := redistest.Start(t)
	s := open(t, url, Options{KeyPrefix: "corrupt"})
	defer s.Close()
	ctx := context.Background()
	if err := s.c.Set(ctx, s.authReqKey("a"), "{not json", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if err := s.c.Set(ctx, s.linkKey("k"), "[]", 0).Err(); err != nil {
		t.Fatal(err)
	}
	_, err := s.GetAuthRequest(ctx, "a")
	if !errors.Is(err, storage.ErrUnavailable) || errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("GetAuthRequest of a corrupt record: error = %v, want ErrUnavailable", err)
	}
	_, err = s.GetLink(ctx, "k")
	if !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("GetLink of a corrupt record: error = %v, want ErrUnavailable", err)
	}
}

// TestReplicas checks that two stores on one Redis, like two broker
// replicas, see each other's writes and share atomicity.
func TestReplicas(t *testing.T) {
	url := redistest.Start(t)
	a, b := open(t, url, Options{}), open(t, url, Options{})
	defer a.Close()
	defer b.Close()
	ctx := context.Background()

	if err := a.CreateCode(ctx, "the-code", storage.AuthCode{ClientID: "app", Expiry: time.Now().Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if got, err := b.ConsumeCode(ctx, "the-code"); err != nil || got.ClientID != "app" {
		t.Fatalf("replica b ConsumeCode = %+v, %v, want the code", got, err)
	}
	if _, err := a.ConsumeCode(ctx, "the-code"); !errors.Is(err, storage.ErrAlreadyUsed) {
		t.Fatalf("replica a ConsumeCode after b: error = %v, want ErrAlreadyUsed", err)
	}

	now := time.Now()
	f := storage.RefreshFamily{ID: "fam1", Grant: storage.Grant{Subject: "alice"}, IdleExpiry: now.Add(time.Hour), AbsoluteExpiry: now.Add(2 * time.Hour)}
	if err := a.CreateRefresh(ctx, f, "fam1.one"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.RotateRefresh(ctx, "fam1.one", "fam1.two", now, time.Hour, storage.Retry{}); err != nil {
		t.Fatalf("replica b RotateRefresh = %v", err)
	}
	if _, _, err := a.RotateRefresh(ctx, "fam1.one", "fam1.three", now, time.Hour, storage.Retry{}); !errors.Is(err, storage.ErrReused) {
		t.Fatalf("replica a RotateRefresh of the rotated token: error = %v, want ErrReused", err)
	}
	if _, err := b.GetRefresh(ctx, "fam1.two"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("replica b GetRefresh after reuse: error = %v, want ErrNotFound", err)
	}

	if ok, err := a.AcquireLease(ctx, "rotate", "a", time.Minute); err != nil || !ok {
		t.Fatalf("replica a AcquireLease = %v, %v", ok, err)
	}
	if ok, err := b.AcquireLease(ctx, "rotate", "b", time.Minute); err != nil || ok {
		t.Fatalf("replica b AcquireLease while a holds it = %v, %v, want false", ok, err)
	}
	v, err := a.PutKeys(ctx, []byte("jwks"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if data, got, err := b.GetKeys(ctx); err != nil || got != v || string(data) != "jwks" {
		t.Fatalf("replica b GetKeys = %q, %d, %v, want jwks, %d", data, got, err, v)
	}
	if err := b.CreateSession(ctx, storage.Session{ID: "cookie", Subject: "alice", Expiry: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if fams, sess, err := a.RevokeSubject(ctx, "alice"); err != nil || fams != 0 || sess != 1 {
		t.Fatalf("replica a RevokeSubject = %d, %d, %v, want 0 (already revoked by reuse), 1", fams, sess, err)
	}
}

// TestSubjectIndexPruned checks that a subject's index does not keep
// entries of expired records forever.
func TestSubjectIndexPruned(t *testing.T) {
	s := open(t, redistest.Start(t), Options{KeyPrefix: "prune"})
	defer s.Close()
	ctx := context.Background()
	short := time.Now().Add(100 * time.Millisecond)
	for i := 0; i < 5; i++ {
		if err := s.CreateSession(ctx, storage.Session{ID: fmt.Sprint("short-", i), Subject: "bob", Expiry: short}); err != nil {
			t.Fatal(err)
		}
		f := storage.RefreshFamily{ID: fmt.Sprint("f", i), Grant: storage.Grant{Subject: "bob"}, IdleExpiry: short, AbsoluteExpiry: short}
		if err := s.CreateRefresh(ctx, f, f.ID+".t"); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(200 * time.Millisecond)
	long := time.Now().Add(time.Hour)
	if err := s.CreateSession(ctx, storage.Session{ID: "long", Subject: "bob", Expiry: long}); err != nil {
		t.Fatal(err)
	}
	f := storage.RefreshFamily{ID: "long", Grant: storage.Grant{Subject: "bob"}, IdleExpiry: long, AbsoluteExpiry: long}
	if err := s.CreateRefresh(ctx, f, "long.t"); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{s.subjSessKey("bob"), s.subjFamKey("bob")} {
		if n, err := s.c.ZCard(ctx, key).Result(); err != nil || n != 1 {
			t.Errorf("ZCARD %s = %d, %v, want 1 (expired entries pruned)", key, n, err)
		}
		if ttl, err := s.c.PTTL(ctx, key).Result(); err != nil || ttl < 59*time.Minute {
			t.Errorf("PTTL %s = %v, %v, want about an hour", key, ttl, err)
		}
	}
	if fams, sess, err := s.RevokeSubject(ctx, "bob"); err != nil || fams != 1 || sess != 1 {
		t.Fatalf("RevokeSubject = %d, %d, %v, want 1, 1", fams, sess, err)
	}
}

func TestMaxmemoryPolicy(t *testing.T) {
	url := redistest.Start(t)
	s := open(t, url, Options{})
	defer s.Close()
	ctx := context.Background()
	orig, err := s.MaxmemoryPolicy(ctx)
	if err != nil {
		t.Fatalf("MaxmemoryPolicy() = %v", err)
	}
	defer s.c.ConfigSet(ctx, "maxmemory-policy", orig)
	if err := s.c.ConfigSet(ctx, "maxmemory-policy", "allkeys-lru").Err(); err != nil {
		t.Fatal(err)
	}
	if got, err := s.MaxmemoryPolicy(ctx); err != nil || got != "allkeys-lru" {
		t.Fatalf("MaxmemoryPolicy() = %q, %v, want allkeys-lru", got, err)
	}
}

func TestOpenRejectsBadPrefix(t *testing.T) {
	if _, err := Open(context.Background(), "redis://127.0.0.1:1", Options{KeyPrefix: "a{b}"}); err == nil {
		t.Fatalf("Open with prefix a{b} = nil error, want an error")
	}
}

func BenchmarkStore(b *testing.B) {
	url := redistest.Start(b)
	storagetest.Bench(b, func(b *testing.B) storage.Storage {
		return open(b, url, Options{KeyPrefix: "bench/" + b.Name()})
	})
}
