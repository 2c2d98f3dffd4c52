package redis

import (
	"context"
	"fmt"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/fedbroker/fedbroker/broker/storage"
)

// The store's epoch (see storage.Epoch) is one hash, <prefix>:epoch, with
// the fields id, since (Unix nanoseconds) and n. A tick runs epochScript:
//
//   - on every new connection, before the connection carries any command
//     (OnConnect; single server and Sentinel), so that the first command
//     after Redis restarted or failed over already sees the new epoch;
//   - in the same round trip, after every security write: a refresh
//     rotation, a code redemption, a family revocation, a revocation or
//     replay record, a session deletion. A write that is a script carries
//     the tick at its end on a single server and Sentinel (tickedScript:
//     Redis runs one script, not two); other writes, and scripts on
//     Cluster, are sent in one pipeline with epochScript;
//   - on the broker's heartbeat (Heartbeat, every storage.EpochInterval).
//
// On Redis Cluster the record lives on one shard: a shard that alone
// restarts empty or from an older snapshot is not detected, and new
// connections are not ticked (a cluster connection cannot run a command
// for another shard's key). Run cluster shards with appendonly yes and
// appendfsync always if that matters; docs/scaling.md says what survives.

// epochScript: KEYS[1] epoch; ARGV seen counter, new id, since for a first
// epoch, since for a loss or rollback, counter for a first epoch,
// counter written forward. {change, id, since, n}: change 0 advanced,
// 1 created (no record), 2 written forward (record behind seen).
var epochScript = goredis.NewScript("local ek, a = KEYS[1], 0\nlocal e\n" + epochTick + "return e")

// epochTick is epochScript's body: ek is the epoch key, and its six
// arguments follow ARGV[a]; it sets e, declared before, to its answer.
const epochTick = `local rec = redis.call('HMGET', ek, 'id', 'since', 'n')
local seen = tonumber(ARGV[a + 1])
if rec[1] and tonumber(rec[3]) >= seen then
  e = {0, rec[1], rec[2], redis.call('HINCRBY', ek, 'n', 1)}
else
  local change, since, n = 1, ARGV[a + 4], ARGV[a + 6]
  if rec[1] then change = 2 end
  if seen == 0 then since, n = ARGV[a + 3], ARGV[a + 5] end
  redis.call('HSET', ek, 'id', ARGV[a + 2], 'since', since, 'n', n)
  e = {change, ARGV[a + 2], since, n}
end
`

// tickedScript is a script after which the epoch ticks (scriptThenTick).
// alone is the script itself, run in one pipeline with epochScript on
// Redis Cluster, where the epoch is in another slot; ticked is the script
// with the tick appended, run on a single server or a Sentinel-managed
// primary, so that Redis runs one script per call, not two. ticked takes
// the epoch key after the script's keys and epochScript's arguments after
// its arguments, and answers {the script's answer, the tick's}; a script
// answering nil (false) answers false there. A tick that fails (the epoch
// key holds something else) answers false: the script's writes are done
// by then and Redis does not undo them, so its answer must still reach
// the caller, as it did when the tick was a command of its own.
type tickedScript struct{ alone, ticked *goredis.Script }

func newTickedScript(src string) tickedScript {
	return tickedScript{
		alone: goredis.NewScript(src),
		ticked: goredis.NewScript("local function op()\n" + src + "\nend\nlocal r = op()\nif r == nil then r = false end\n" +
			"local ek, a = KEYS[#KEYS], #ARGV - 6\nlocal e = false\npcall(function()\n" + epochTick + "end)\nreturn {r, e}"),
	}
}

func (s *Store) epochKey() string { return s.prefix + ":epoch" }

// startEpochScript: KEYS[1] epoch; ARGV new id, since, jump. Writes a new
// epoch whose counter is the stored one (or 0) plus the jump. {id, since, n}.
var startEpochScript = goredis.NewScript(`
local n = tonumber(redis.call('HGET', KEYS[1], 'n') or '0') + tonumber(ARGV[3])
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'since', ARGV[2], 'n', string.format('%d', n))
return {ARGV[1], ARGV[2], n}`)

// StartEpoch begins a new epoch now; see storage.EpochStarter.
func (s *Store) StartEpoch(ctx context.Context) (storage.Epoch, error) {
	now := s.now()
	res, err := startEpochScript.Run(ctx, s.c, []string{s.epochKey()}, storage.NewEpochID(), strconv.FormatInt(now.UnixNano(), 10), storage.EpochJump).Slice()
	if err != nil {
		return storage.Epoch{}, unavailable("start epoch", err)
	}
	e, _, err := parseEpoch(append([]any{int64(0)}, res...))
	if err != nil {
		return storage.Epoch{}, err
	}
	s.epoch.Observe(e, storage.EpochSame)
	return e, nil
}

// tickArgs are epochScript's arguments for this client now.
func (s *Store) tickArgs() []any {
	seen := s.epoch.Seen()
	now := s.now()
	first := "0" // a first epoch distrusts nothing (see storage.EpochCreated)
	return []any{
		seen, storage.NewEpochID(),
		first, strconv.FormatInt(now.UnixNano(), 10),
		"1", strconv.FormatInt(seen+storage.EpochJump, 10),
	}
}

// tick runs one tick on c (the store's client or one connection).
func (s *Store) tick(ctx context.Context, c goredis.Scripter) error {
	return s.observe(epochScript.Run(ctx, c, []string{s.epochKey()}, s.tickArgs()...))
}

// observe hands a tick's answer to the tracker.
func (s *Store) observe(cmd *goredis.Cmd) error {
	res, err := cmd.Slice()
	if err != nil {
		return unavailable("storage epoch", err)
	}
	e, change, err := parseEpoch(res)
	if err != nil {
		return err
	}
	s.epoch.Observe(e, change)
	return nil
}

func parseEpoch(res []any) (storage.Epoch, storage.EpochChange, error) {
	bad := fmt.Errorf("redis: storage epoch: malformed answer %v: %w", res, storage.ErrUnavailable)
	if len(res) != 4 {
		return storage.Epoch{}, 0, bad
	}
	change, ok1 := res[0].(int64)
	id, ok2 := res[1].(string)
	since, err1 := strconv.ParseInt(fmt.Sprint(res[2]), 10, 64)
	n, err2 := strconv.ParseInt(fmt.Sprint(res[3]), 10, 64)
	if !ok1 || !ok2 || err1 != nil || err2 != nil || change < 0 || change > 2 {
		return storage.Epoch{}, 0, bad
	}
	e := storage.Epoch{ID: id, N: n}
	if since > 0 {
		e.Since = time.Unix(0, since)
	}
	return e, storage.EpochChange(change), nil
}

// Since returns the start of the epoch this client last saw; see
// storage.Storage.
func (s *Store) Since() time.Time { return s.epoch.Since() }

// Heartbeat ticks the epoch; see storage.Storage.
func (s *Store) Heartbeat(ctx context.Context) error { return s.tick(ctx, s.c) }

// Regressions counts the times this client found Redis empty or rolled
// back, for metrics.
func (s *Store) Regressions() int64 { return s.epoch.Regressions() }

// installOnConnect makes every new connection of a single-server or
// Sentinel client tick before it carries a command. A connection whose
// tick fails is not used: the command fails as unavailable rather than run
// against a store whose epoch could not be checked.
func (s *Store) installOnConnect() {
	c, ok := s.c.(*goredis.Client)
	if !ok {
		return // cluster: see the comment at the top of this file
	}
	opt := c.Options()
	prev := opt.OnConnect
	opt.OnConnect = func(ctx context.Context, cn *goredis.Conn) error {
		if prev != nil {
			if err := prev(ctx, cn); err != nil {
				return err
			}
		}
		return s.tick(ctx, cn)
	}
}

// thenTick queues commands with queue and a tick after them, and sends all
// in one round trip. The tick's failure is not the commands' failure: the
// heartbeat retries it.
func (s *Store) thenTick(ctx context.Context, queue func(p goredis.Pipeliner)) {
	var tk *goredis.Cmd
	args := s.tickArgs()
	_, _ = s.c.Pipelined(ctx, func(p goredis.Pipeliner) error {
		queue(p)
		tk = epochScript.EvalSha(ctx, p, []string{s.epochKey()}, args...)
		return nil
	})
	if isNoScript(tk.Err()) {
		tk = epochScript.Run(ctx, s.c, []string{s.epochKey()}, args...)
	}
	if err := s.observe(tk); err != nil {
		s.log.Debug("storage epoch tick failed", "err", err)
	}
}

// scriptThenTick runs sc and a tick in one round trip: as one script on a
// single server (see tickedScript), in one pipeline on Cluster. A script
// Redis does not know yet (NOSCRIPT: it did not run) is run again with its
// source.
func (s *Store) scriptThenTick(ctx context.Context, sc tickedScript, keys []string, args ...any) *goredis.Cmd {
	if s.oneSlot() {
		return s.runTicked(ctx, sc, keys, args)
	}
	var op *goredis.Cmd
	s.thenTick(ctx, func(p goredis.Pipeliner) { op = sc.alone.EvalSha(ctx, p, keys, args...) })
	if isNoScript(op.Err()) {
		op = sc.alone.Run(ctx, s.c, keys, args...)
		if err := s.tick(ctx, s.c); err != nil {
			s.log.Debug("storage epoch tick failed", "err", err)
		}
	}
	return op
}

// runTicked runs sc.ticked and hands the tick's answer to the tracker; it
// returns the script's own answer as running sc.alone would have.
func (s *Store) runTicked(ctx context.Context, sc tickedScript, keys []string, args []any) *goredis.Cmd {
	keys = append(keys[:len(keys):len(keys)], s.epochKey())
	args = append(args[:len(args):len(args)], s.tickArgs()...)
	res, err := sc.ticked.Run(ctx, s.c, keys, args...).Slice()
	if err != nil {
		return goredis.NewCmdResult(nil, err)
	}
	if len(res) != 2 {
		return goredis.NewCmdResult(nil, fmt.Errorf("redis: malformed answer %v: %w", res, storage.ErrUnavailable))
	}
	if err := s.observe(goredis.NewCmdResult(res[1], nil)); err != nil {
		s.log.Debug("storage epoch tick failed", "err", err)
	}
	if res[0] == nil {
		return goredis.NewCmdResult(nil, goredis.Nil)
	}
	return goredis.NewCmdResult(res[0], nil)
}

func isNoScript(err error) bool { return err != nil && goredis.HasErrorPrefix(err, "NOSCRIPT") }

// lost reports whether a record created at created may have been lost with
// state from before the current epoch.
func (s *Store) lost(created time.Time) bool {
	return storage.CreatedBefore(created, s.Since())
}
