package config

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestRequireDurability(t *testing.T) {
	const iss = "issuer: https://sso.example.com\n"
	for _, v := range []string{"aof", "rdb", "none"} {
		cfg, err := Parse(fill(iss+"storage: {type: redis, redis: {url: 'redis://r:6379/0', require_durability: "+v+"}}\n"), noEnv)
		if err != nil {
			t.Fatalf("require_durability %s: %v", v, err)
		}
		if cfg.Storage.Redis.RequireDurability != v {
			t.Errorf("RequireDurability = %q, want %q", cfg.Storage.Redis.RequireDurability, v)
		}
	}
	cfg, err := Parse(fill(iss), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Storage.Redis.RequireDurability; got != "" && got != "none" {
		t.Errorf("default RequireDurability = %q, want none (accept anything)", got)
	}
	for _, v := range []string{"always", "AOF", "unknown"} {
		_, err := Parse(fill(iss+"storage: {type: redis, redis: {url: 'redis://r:6379/0', require_durability: "+v+"}}\n"), noEnv)
		if diff := cmp.Diff([]string{"storage.redis.require_durability"}, paths(t, err)); diff != "" {
			t.Errorf("require_durability %s: problem paths (-want +got):\n%s\nerror: %v", v, diff, err)
		}
		if err != nil && !strings.Contains(err.Error(), "aof, rdb or none") {
			t.Errorf("require_durability %s: error %q does not list the allowed values", v, err)
		}
	}
}
