package redis

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/fedbroker/fedbroker/broker/storage"
)

// The replica registry on Redis.
//
// Each replica's record is one JSON string at replicaKey(id), expiring
// (PEXPIREAT) at its `until`, which the record also holds so that reads
// check it against the clock at full precision. A sorted set at
// replicaIndexKey lists the ids, scored by that expiry in Unix
// milliseconds; the set itself expires with its last member. Both share
// the hash tag {<prefix>:replicas}, so one script writes them together on
// Redis Cluster and ListReplicas reads the records with one slot's MGET.
// There are as many records as running broker processes, so one slot is
// no hot spot.
//
// Records are ephemeral: Export does not scan these keys, and writing one
// does not tick the storage epoch (it decides nothing about security).

func (s *Store) replicaKey(id string) string { return "{" + s.prefix + ":replicas}:r:" + id }
func (s *Store) replicaIndexKey() string     { return "{" + s.prefix + ":replicas}:idx" }

// replicaRecord is a replica's stored form: the record and its end.
type replicaRecord struct {
	storage.Replica
	Until time.Time `json:"until"`
}

// putReplicaScript: KEYS record, index; ARGV id, rec ("" deletes),
// expire-at ms, now ms. The index loses its expired members and lives as
// long as its longest-lived one.
var putReplicaScript = goredis.NewScript(`
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[4])
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 0
end
redis.call('SET', KEYS[1], ARGV[2], 'PXAT', ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[2], last[2])
return 1`)

// PutReplica stores r under r.ID until `until`, replacing that ID's
// record; an until that has passed deletes it. See storage.ReplicaRegistry.
func (s *Store) PutReplica(ctx context.Context, r storage.Replica, until time.Time) error {
	if r.ID == "" {
		return fmt.Errorf("redis: put replica: empty id")
	}
	if len(r.Activity) > storage.MaxReplicaActivity {
		return fmt.Errorf("redis: put replica %s: activity of %d bytes exceeds %d", r.ID, len(r.Activity), storage.MaxReplicaActivity)
	}
	now := s.now()
	rec := ""
	if now.Before(until) {
		var err error
		if rec, err = encode(replicaRecord{Replica: r, Until: until}); err != nil {
			return err
		}
	}
	err := putReplicaScript.Run(ctx, s.c, []string{s.replicaKey(r.ID), s.replicaIndexKey()},
		r.ID, rec, ms(until), now.UnixMilli()).Err()
	if err != nil {
		return unavailable("put replica", err)
	}
	return nil
}

// ListReplicas returns every record not yet expired, ordered by ID. It
// first removes the index members that expired; members whose record is
// gone meanwhile are skipped. See storage.ReplicaRegistry.
func (s *Store) ListReplicas(ctx context.Context) ([]storage.Replica, error) {
	now := s.now()
	idx := s.replicaIndexKey()
	var ids *goredis.StringSliceCmd
	_, err := s.c.Pipelined(ctx, func(p goredis.Pipeliner) error {
		p.ZRemRangeByScore(ctx, idx, "-inf", strconv.FormatInt(now.UnixMilli(), 10))
		ids = p.ZRange(ctx, idx, 0, -1)
		return nil
	})
	if err != nil {
		return nil, unavailable("list replicas", err)
	}
	rest := ids.Val()
	out := make([]storage.Replica, 0, len(rest))
	const batch = 500
	for len(rest) > 0 {
		n := min(batch, len(rest))
		keys := make([]string, n)
		for i, id := range rest[:n] {
			keys[i] = s.replicaKey(id)
		}
		rest = rest[n:]
		vals, err := s.c.MGet(ctx, keys...).Result()
		if err != nil {
			return nil, unavailable("list replicas", err)
		}
		for _, v := range vals {
			data, ok := v.(string)
			if !ok {
				continue // expired or replaced by a past until since ZRANGE
			}
			var rec replicaRecord
			if err := s.decode("replica", data, &rec); err != nil {
				return nil, err
			}
			if now.Before(rec.Until) {
				out = append(out, rec.Replica)
			}
		}
	}
	slices.SortFunc(out, func(a, b storage.Replica) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}
