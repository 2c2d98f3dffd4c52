package redis

import (
	"context"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/fedbroker/fedbroker/broker/storage/redis/redistest"
)

// redis7Persistence is `redis-cli INFO persistence` from redis-server 7.0.15
// started with --appendonly yes --save "" (Redis sends CRLF line ends).
const redis7Persistence = `# Persistence
loading:0
async_loading:0
current_cow_peak:0
current_cow_size:0
current_cow_size_age:0
current_fork_perc:0.00
current_save_keys_processed:0
current_save_keys_total:0
rdb_changes_since_last_save:0
rdb_bgsave_in_progress:0
rdb_last_save_time:1796075489
rdb_last_bgsave_status:ok
rdb_last_bgsave_time_sec:-1
rdb_current_bgsave_time_sec:-1
rdb_saves:0
rdb_last_cow_size:0
rdb_last_load_keys_expired:0
rdb_last_load_keys_loaded:0
aof_enabled:1
aof_rewrite_in_progress:0
aof_rewrite_scheduled:0
aof_last_rewrite_time_sec:-1
aof_current_rewrite_time_sec:-1
aof_last_bgrewrite_status:ok
aof_rewrites:0
aof_rewrites_consecutive_failures:0
aof_last_write_status:ok
aof_last_cow_size:0
module_fork_in_progress:0
module_fork_last_cow_size:0
aof_current_size:0
aof_base_size:0
aof_pending_rewrite:0
aof_buffer_length:0
aof_pending_bio_fsync:0
aof_delayed_fsync:0
`

func TestAssessDurability(t *testing.T) {
	aofOff := strings.Replace(redis7Persistence, "aof_enabled:1", "aof_enabled:0", 1)
	crlf := func(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }
	for _, tc := range []struct {
		name   string
		info   string // "" = INFO refused
		config map[string]string
		want   string
	}{
		{"redis 7 aof, CONFIG refused", redis7Persistence, nil, DurabilityAOF},
		{"redis 7 aof, CRLF", crlf(redis7Persistence), nil, DurabilityAOF},
		{"aof with config", redis7Persistence, map[string]string{"save": "", "appendonly": "yes", "appendfsync": "everysec"}, DurabilityAOF},
		{"rdb only", crlf(aofOff), map[string]string{"save": "3600 1 300 100", "appendonly": "no"}, DurabilityRDB},
		{"none", aofOff, map[string]string{"save": "", "appendonly": "no"}, DurabilityNone},
		{"aof off, CONFIG refused: save points unknown", aofOff, nil, DurabilityUnknown},
		{"INFO refused, CONFIG answers aof", "", map[string]string{"save": "", "appendonly": "yes"}, DurabilityAOF},
		{"INFO refused, CONFIG answers rdb", "", map[string]string{"save": "900 1", "appendonly": "no"}, DurabilityRDB},
		{"both refused", "", nil, DurabilityUnknown},
		{"INFO unparsable", "ERR unknown section\r\n", nil, DurabilityUnknown},
		{"INFO garbage value", "# Persistence\r\naof_enabled:maybe\r\n", nil, DurabilityUnknown},
		{"INFO without persistence", "# Server\r\nredis_version:7.0.15\r\n", map[string]string{"save": "3600 1"}, DurabilityUnknown},
		{"CONFIG disagrees is ignored: INFO wins", redis7Persistence, map[string]string{"appendonly": "no", "save": ""}, DurabilityAOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := AssessDurability(tc.info, tc.config)
			if d.Mode != tc.want {
				t.Fatalf("mode = %q (%+v), want %q", d.Mode, d, tc.want)
			}
			if d.Loss != lossOf(tc.want) || d.Loss == "" {
				t.Errorf("loss = %q, want %q", d.Loss, lossOf(tc.want))
			}
			if d.Reported == "" {
				t.Errorf("Reported is empty; the error and log must say what Redis reported")
			}
		})
	}
}

func TestAssessDurabilityFsyncNo(t *testing.T) {
	d := AssessDurability(redis7Persistence, map[string]string{"appendonly": "yes", "appendfsync": "no", "save": ""})
	if d.Mode != DurabilityAOF || !strings.Contains(d.Loss, "appendfsync no") {
		t.Fatalf("appendfsync no: %+v, want aof with a loss naming appendfsync no", d)
	}
	d = AssessDurability(redis7Persistence, map[string]string{"appendonly": "yes", "appendfsync": "everysec"})
	if d.Loss != "a Redis restart loses at most the last second" {
		t.Fatalf("everysec loss = %q", d.Loss)
	}
}

func TestDurabilityRequire(t *testing.T) {
	modes := []string{DurabilityAOF, DurabilityRDB, DurabilityNone, DurabilityUnknown}
	ok := map[string][]string{
		"":     modes,
		"none": modes,
		"rdb":  {DurabilityAOF, DurabilityRDB},
		"aof":  {DurabilityAOF},
	}
	for req, pass := range ok {
		for _, m := range modes {
			d := Durability{Mode: m, Loss: lossOf(m), Reported: "aof_enabled:0"}
			err := d.Require(req)
			want := false
			for _, p := range pass {
				want = want || p == m
			}
			if (err == nil) != want {
				t.Errorf("Durability{%s}.Require(%q) = %v, want ok=%v", m, req, err, want)
			}
			if err != nil && (!strings.Contains(err.Error(), m) || !strings.Contains(err.Error(), "aof_enabled:0") || !strings.Contains(err.Error(), req)) {
				t.Errorf("Require error %q names neither the mode %q, the requirement %q nor what Redis reported", err, m, req)
			}
		}
	}
	if err := (Durability{Mode: DurabilityAOF}).Require("always"); err == nil {
		t.Errorf("Require(always) = nil, want an error for an unknown requirement")
	}
}

// TestDurabilityDetected starts redis-server three ways and reads back what
// the broker would report.
func TestDurabilityDetected(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		mode string
		loss string
	}{
		{"aof", []string{"--appendonly", "yes"}, DurabilityAOF, "a Redis restart loses at most the last second"},
		{"rdb", []string{"--save", "3600 1", "--appendonly", "no"}, DurabilityRDB, "a Redis crash rolls back to the last snapshot: refresh tokens already rotated or revoked may work again, revocations may be forgotten"},
		{"none", []string{"--save", "", "--appendonly", "no"}, DurabilityNone, "a Redis restart loses everything: all sessions, refresh tokens, revocations and signing keys"},
		// CONFIG disabled, as on some managed Redis: INFO still says AOF.
		{"aof, CONFIG disabled", []string{"--appendonly", "yes", "--rename-command", "CONFIG", ""}, DurabilityAOF, "a Redis restart loses at most the last second"},
		// ... but cannot tell save points from none.
		{"rdb, CONFIG disabled", []string{"--save", "3600 1", "--rename-command", "CONFIG", ""}, DurabilityUnknown, lossOf(DurabilityUnknown)},
		{"INFO and CONFIG disabled", []string{"--appendonly", "yes", "--rename-command", "CONFIG", "", "--rename-command", "INFO", ""}, DurabilityUnknown, lossOf(DurabilityUnknown)},
		{"INFO disabled, CONFIG answers", []string{"--save", "3600 1", "--rename-command", "INFO", ""}, DurabilityRDB, lossOf(DurabilityRDB)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := redistest.StartServer(t, tc.args...)
			s := open(t, srv.URL(), Options{})
			defer s.Close()
			d := s.Durability(context.Background())
			if d.Mode != tc.mode || d.Loss != tc.loss {
				t.Fatalf("Durability() = %+v, want mode %q loss %q", d, tc.mode, tc.loss)
			}
		})
	}
}

func TestDurabilityUnreachable(t *testing.T) {
	srv := redistest.StartServer(t, "--appendonly", "yes")
	s := open(t, srv.URL(), Options{})
	defer s.Close()
	srv.Stop()
	if d := s.Durability(context.Background()); d.Mode != DurabilityUnknown {
		t.Fatalf("Durability() of a stopped server = %+v, want unknown", d)
	}
}

// TestDurabilityCluster checks every master of a Redis Cluster (here a
// one-node cluster with AOF on).
func TestDurabilityCluster(t *testing.T) {
	for _, tc := range []struct {
		appendonly, mode string
	}{{"yes", DurabilityAOF}, {"no", DurabilityNone}} {
		srv := startOneNodeCluster(t, "--appendonly", tc.appendonly)
		ctx := context.Background()
		s := open(t, "redis-cluster://"+srv.Addr(), Options{})
		if _, ok := s.c.(*goredis.ClusterClient); !ok {
			t.Fatalf("client is %T, want *ClusterClient", s.c)
		}
		d := s.Durability(ctx)
		// A one-node cluster announces itself without a host: ":port".
		port := srv.Addr()[strings.LastIndex(srv.Addr(), ":"):]
		if d.Mode != tc.mode || !strings.Contains(d.Reported, port+": aof_enabled:") {
			t.Errorf("appendonly %s: Durability() = %+v, want %s naming the master %s", tc.appendonly, d, tc.mode, srv.Addr())
		}
		s.Close()
	}
}

// TestWeakest: a cluster is as durable as its least durable master.
func TestWeakest(t *testing.T) {
	for _, tc := range []struct {
		modes []string
		want  string
	}{
		{[]string{DurabilityAOF, DurabilityAOF}, DurabilityAOF},
		{[]string{DurabilityAOF, DurabilityRDB}, DurabilityRDB},
		{[]string{DurabilityRDB, DurabilityUnknown, DurabilityAOF}, DurabilityUnknown},
		{[]string{DurabilityUnknown, DurabilityNone}, DurabilityNone},
		{nil, DurabilityUnknown},
	} {
		var ds []Durability
		for _, m := range tc.modes {
			ds = append(ds, Durability{Mode: m, Loss: lossOf(m)})
		}
		if got := weakest(ds).Mode; got != tc.want {
			t.Errorf("weakest(%v) = %s, want %s", tc.modes, got, tc.want)
		}
	}
}

// TestCrashRecovery shows what the "rdb" message claims: after a crash Redis
// comes back with the last snapshot, so a record deleted after it is back.
// And what the "aof" message claims: a write older than a second survives
// a crash. ("none": TestStopRestart in redistest, the server comes back
// empty.)
func TestCrashRecovery(t *testing.T) {
	ctx := context.Background()
	t.Run("rdb", func(t *testing.T) {
		srv := redistest.StartServer(t, "--save", "3600 1", "--appendonly", "no")
		c := goredis.NewClient(&goredis.Options{Addr: srv.Addr(), MaxRetries: -1})
		defer c.Close()
		c.Set(ctx, "revoked-later", "live", 0)
		if err := c.Save(ctx).Err(); err != nil {
			t.Fatalf("SAVE: %v", err)
		}
		c.Del(ctx, "revoked-later")
		c.Set(ctx, "after-snapshot", "x", 0)
		srv.Restart() // SIGKILL: a crash
		waitPing(t, c)
		if v, _ := c.Get(ctx, "revoked-later").Result(); v != "live" {
			t.Errorf("after a crash, a key deleted after the snapshot = %q, want it back (rolled back)", v)
		}
		if n, _ := c.Exists(ctx, "after-snapshot").Result(); n != 0 {
			t.Errorf("after a crash, a key written after the snapshot survived; want it lost")
		}
	})
	t.Run("aof", func(t *testing.T) {
		srv := redistest.StartServer(t, "--appendonly", "yes", "--save", "")
		c := goredis.NewClient(&goredis.Options{Addr: srv.Addr(), MaxRetries: -1})
		defer c.Close()
		c.Set(ctx, "k", "v", 0)
		c.Set(ctx, "revoked", "live", 0)
		c.Del(ctx, "revoked")
		time.Sleep(1500 * time.Millisecond) // appendfsync everysec
		srv.Restart()
		waitPing(t, c)
		if v, _ := c.Get(ctx, "k").Result(); v != "v" {
			t.Errorf("after a crash with AOF, a write older than a second = %q, want kept", v)
		}
		if n, _ := c.Exists(ctx, "revoked").Result(); n != 0 {
			t.Errorf("after a crash with AOF, a deletion older than a second was forgotten")
		}
	})
}

func waitPing(t *testing.T, c *goredis.Client) {
	t.Helper()
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if err = c.Ping(context.Background()).Err(); err == nil {
			return
		}
	}
	t.Fatalf("PING after restart: %v", err)
}
