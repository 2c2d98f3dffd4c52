package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/fedbroker/fedbroker/broker/storage"
	redisstore "github.com/fedbroker/fedbroker/broker/storage/redis"
	"github.com/fedbroker/fedbroker/broker/storage/redis/redistest"
	"github.com/fedbroker/fedbroker/broker/storage/storagetest"
)

// startRedisCluster starts three redis-server processes in cluster mode and
// joins them with `redis-cli --cluster create` into a cluster of three
// masters (no replicas), then waits until every node reports
// cluster_state:ok. It returns the node addresses.
func startRedisCluster(t *testing.T) []string {
	t.Helper()
	cli := redistest.Binary(t, "redis-cli")
	var addrs []string
	for range 3 {
		s := redistest.StartServer(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000")
		addrs = append(addrs, s.Addr())
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	for _, a := range addrs {
		c := goredis.NewClient(&goredis.Options{Addr: a})
		for {
			info, err := c.ClusterInfo(ctx).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				break
			}
			if ctx.Err() != nil {
				c.Close()
				t.Fatalf("node %s: cluster not ready: %q, %v", a, info, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		c.Close()
	}
	return addrs
}

// TestRedisClusterConformance runs the storage conformance suite on a real
// three-master Redis Cluster through a redis-cluster:// URL: every
// multi-key operation must stay in one hash slot (no CROSSSLOT).
func TestRedisClusterConformance(t *testing.T) {
	addrs := startRedisCluster(t)
	url := "redis-cluster://" + strings.Join(addrs, ",")
	var n atomic.Int64
	storagetest.Run(t, func(t *testing.T) storage.Storage {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s, err := redisstore.Open(ctx, url, redisstore.Options{KeyPrefix: fmt.Sprintf("conf%d", n.Add(1))})
		if err != nil {
			t.Fatalf("redis.Open(%s): %v", url, err)
		}
		return s
	})

	// The keys really are spread over the three masters.
	ctx := context.Background()
	for _, a := range addrs {
		c := goredis.NewClient(&goredis.Options{Addr: a})
		keys, err := c.DBSize(ctx).Result()
		c.Close()
		if err != nil {
			t.Fatalf("DBSIZE on %s: %v", a, err)
		}
		t.Logf("master %s holds %d keys", a, keys)
	}
}

// TestBrokerOnRedisCluster runs a login through two replicas whose storage
// is the three-master cluster.
func TestBrokerOnRedisCluster(t *testing.T) {
	addrs := startRedisCluster(t)
	cl := startCluster(t, 2, "redis-cluster://"+strings.Join(addrs, ","), "")
	var ls loginSteps
	cl.use(0)
	if err := ls.authorize(cl.Issuer); err != nil {
		t.Fatal(err)
	}
	cl.use(1)
	code, err := ls.submit(alicePassword)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := redeem(cl.Replicas[0].URL, code, ls.p)
	if err != nil || tr.status != 200 {
		t.Fatalf("redeem = %+v, %v; want 200", tr, err)
	}
	if rt, err := refresh(cl.Replicas[1].URL, tr.RefreshToken); err != nil || rt.status != 200 {
		t.Fatalf("refresh = %+v, %v; want 200", rt, err)
	}
	if rt, err := refresh(cl.Replicas[0].URL, tr.RefreshToken); err != nil || rt.Error != "invalid_grant" {
		t.Fatalf("reused refresh token = %+v, %v; want invalid_grant", rt, err)
	}
}

// TestEvictionPolicy: a broker refuses to start on a Redis that evicts
// keys (allkeys-lru) and starts there with eviction_policy: warn.
func TestEvictionPolicy(t *testing.T) {
	rs := redistest.StartServer(t, "--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru")

	refused := newReplica(t, brokerConfig{RedisURL: rs.URL()})
	if code := refused.exitCode(20 * time.Second); code <= 0 {
		t.Fatalf("broker under allkeys-lru: exit code %d, want a non-zero exit; log:\n%s", code, refused.log())
	}
	if log := refused.log(); !strings.Contains(log, "maxmemory-policy allkeys-lru") {
		t.Errorf("refusal log does not name the policy:\n%s", log)
	}

	warned := startBroker(t, brokerConfig{RedisURL: rs.URL(), Eviction: "warn"})
	if tr, err := clientCredentials(warned.URL); err != nil || tr.status != 200 {
		t.Fatalf("client_credentials on the warned broker = %+v, %v; want 200", tr, err)
	}
	if log := warned.log(); !strings.Contains(log, "allkeys-lru") {
		t.Errorf("warned broker did not log the policy:\n%s", log)
	}
}

// startSentinel starts a redis-sentinel watching the master at addr under
// the name "mymaster" and returns the sentinel's address once it knows the
// master.
func startSentinel(t *testing.T, master string) string {
	t.Helper()
	bin := redistest.Binary(t, "redis-server")
	host, port, _ := strings.Cut(master, ":")
	addr := freeAddr(t)
	_, sport, _ := strings.Cut(addr, ":")
	dir := t.TempDir()
	conf := dir + "/sentinel.conf"
	body := fmt.Sprintf("port %s\nbind 127.0.0.1\ndir %s\nprotected-mode no\nsentinel monitor mymaster %s %s 1\nsentinel down-after-milliseconds mymaster 2000\n", sport, dir, host, port)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, conf, "--sentinel")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	c := goredis.NewSentinelClient(&goredis.Options{Addr: addr})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for {
		got, err := c.GetMasterAddrByName(ctx, "mymaster").Result()
		if err == nil && len(got) == 2 && got[1] == port {
			return addr
		}
		if ctx.Err() != nil {
			t.Fatalf("sentinel on %s does not know the master: %v, %v\n%s", addr, got, err, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestBrokerOnSentinel runs two replicas whose storage URL names a
// Sentinel, not the master: the login and a refresh go through it.
func TestBrokerOnSentinel(t *testing.T) {
	master := redistest.StartServer(t)
	sentinel := startSentinel(t, master.Addr())
	cl := startCluster(t, 2, "redis-sentinel://"+sentinel+"/mymaster", "")
	cl.use(1)
	tr := fullLogin(t, cl.Issuer)
	if rt, err := refresh(cl.Replicas[0].URL, tr.RefreshToken); err != nil || rt.status != 200 {
		t.Fatalf("refresh through the sentinel = %+v, %v; want 200", rt, err)
	}
	// The state really is on the master the sentinel named.
	c := goredis.NewClient(&goredis.Options{Addr: master.Addr()})
	defer c.Close()
	if n, err := c.DBSize(context.Background()).Result(); err != nil || n == 0 {
		t.Errorf("master holds %d keys (%v), want the broker's state", n, err)
	}
}
