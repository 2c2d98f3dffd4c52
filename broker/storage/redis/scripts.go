package redis

import goredis "github.com/redis/go-redis/v9"

// Lua scripts for the operations that must be atomic. Every key a script
// touches shares one hash tag (see famKeys, linkKey). Times compared inside
// scripts are 20-digit zero-padded Unix nanoseconds, so string comparison is
// numeric comparison without float rounding.

// createCode: KEYS[1] code; ARGV rec, expire-at ms, then field, value
// pairs kept beside rec for redeemCodeScript. 0 when it exists.
var createCodeScript = goredis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'rec', ARGV[1])
for i = 3, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
return 1`)

// consumeCode: KEYS[1] code; ARGV the family id to set on the code's
// first consumption ("" none). nil when absent, else {rec, times used,
// family id set or ""}.
var consumeCodeScript = newTickedScript(`
local rec = redis.call('HGET', KEYS[1], 'rec')
if not rec then return false end
local n = redis.call('HINCRBY', KEYS[1], 'used', 1)
if n == 1 and ARGV[1] ~= '' then redis.call('HSET', KEYS[1], 'fid', ARGV[1]) end
return {rec, n, redis.call('HGET', KEYS[1], 'fid') or ''}`)

// createRefresh: KEYS fam, legacy rotated set, tomb; ARGV rec, current hash,
// idle expiry ns, absolute expiry ns, absolute expiry ms, expire-at ms.
// -1 revoked, 0 exists, 1 created.
var createRefreshScript = goredis.NewScript(`
if redis.call('EXISTS', KEYS[3]) == 1 then return -1 end
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'rec', ARGV[1], 'cur', ARGV[2], 'ien', ARGV[3], 'aen', ARGV[4], 'aems', ARGV[5])
redis.call('PEXPIREAT', KEYS[1], ARGV[6])
return 1`)

// rotateRefresh: KEYS fam, legacy rotated set, tomb; ARGV old hash, next
// hash, now ns, last-used (RFC 3339), idle expiry (RFC 3339), idle expiry
// ns, idle expiry ms, sealed successor ("" keeps none), retry cutoff ns
// (now minus the retry window; "" answers no retry).
// {-1} unknown or expired, {-2} reuse (family revoked), {2, rec, last
// used, idle expiry, sealed successor} a retry (nothing changed), else
// {1, rec, last used, idle expiry or "" when capped at the absolute expiry}.
// A family is one hash of constant size: the current token's hash and a
// rotation count ('gen'), no set of rotated tokens; any other token of a
// live family is reuse (see RotateRefresh), but the token the last
// rotation replaced ('prev', rotated at 'rot', successor sealed in 'nx')
// while 'rot' is after the cutoff, which is a retry. A set of rotated
// hashes left by an earlier version (KEYS[2]) is deleted at the first
// rotation.
var rotateRefreshScript = newTickedScript("\n" + rotateCheck + rotateWrite)

// rotateCheck is the first half of rotateRefreshScript (and of
// refreshGrantScript): the family read, then the answers to an unknown or
// expired family, a retry and a reuse; f is the family's fields.
const rotateCheck = `local f = redis.call('HMGET', KEYS[1], 'rec', 'cur', 'ien', 'aen', 'aems', 'prev', 'rot', 'nx', 'lu', 'ie')
if not f[1] then return {-1} end
if ARGV[3] >= f[3] or ARGV[3] >= f[4] then return {-1} end
if f[2] ~= ARGV[1] then
  if ARGV[9] ~= '' and f[6] == ARGV[1] and f[7] and f[7] > ARGV[9] and f[8] then
    return {2, f[1], f[9] or '', f[10] or '', f[8]}
  end
  redis.call('DEL', KEYS[1], KEYS[2])
  redis.call('SET', KEYS[3], '1', 'PXAT', f[5])
  return {-2}
end
`

// rotateWrite is the second half: the rotation of a current token.
const rotateWrite = `local ie, ien, iems = ARGV[5], ARGV[6], ARGV[7]
if ien >= f[4] then ie, ien, iems = '', f[4], f[5] end
redis.call('HSET', KEYS[1], 'cur', ARGV[2], 'lu', ARGV[4], 'ie', ie, 'ien', ien)
if ARGV[8] == '' then
  redis.call('HDEL', KEYS[1], 'prev', 'rot', 'nx')
else
  redis.call('HSET', KEYS[1], 'prev', ARGV[1], 'rot', ARGV[3], 'nx', ARGV[8])
end
redis.call('HINCRBY', KEYS[1], 'gen', 1)
redis.call('PEXPIREAT', KEYS[1], iems)
redis.call('DEL', KEYS[2])
return {1, f[1], ARGV[4], ie}`

// revokeFamily: KEYS fam, legacy rotated set, tomb; ARGV tombstone until ms
// ("" for the family's absolute expiry), now ms. Returns 1 if a family was deleted.
var revokeFamilyScript = newTickedScript(`
local tomb = ARGV[1]
if tomb == '' then tomb = redis.call('HGET', KEYS[1], 'aems') end
local n = redis.call('DEL', KEYS[1])
redis.call('DEL', KEYS[2])
if tomb and tonumber(tomb) > tonumber(ARGV[2]) then
  local left = redis.call('PTTL', KEYS[3])
  if left < 0 or tonumber(ARGV[2]) + left < tonumber(tomb) then
    redis.call('SET', KEYS[3], '1', 'PXAT', tomb)
  end
end
return n`)

// indexAdd: KEYS[1] sorted set; ARGV member, expire-at ms, now ms. Drops
// members whose record expired, adds member scored by its expiry, and
// extends the set's lifetime to at least expire-at, so an index holds at
// most the records that may still live.
var indexAddScript = goredis.NewScript(`
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[3])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
local left = redis.call('PTTL', KEYS[1])
if left < 0 or tonumber(ARGV[3]) + left < tonumber(ARGV[2]) then
  redis.call('PEXPIREAT', KEYS[1], ARGV[2])
end
return 1`)

// putKeys: KEYS[1] keys; ARGV data, expected version. {1, new} or {0, current}.
var putKeysScript = goredis.NewScript(`
local v = tonumber(redis.call('HGET', KEYS[1], 'ver') or '0')
if v ~= tonumber(ARGV[2]) then return {0, v} end
redis.call('HSET', KEYS[1], 'data', ARGV[1], 'ver', v + 1)
return {1, v + 1}`)

// acquireLease: KEYS[1] lease; ARGV holder, ttl ms.
var acquireLeaseScript = goredis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v and v ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1`)

// createLink: KEYS link, index; ARGV rec, link key. {stored rec, created}.
var createLinkScript = goredis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v then return {v, 0} end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[2], ARGV[2])
return {ARGV[1], 1}`)

// deleteLink: KEYS link, index; ARGV link key. 1 if it existed.
var deleteLinkScript = goredis.NewScript(`
local n = redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[1])
return n`)

// updateRefreshGrant: KEYS fam; ARGV current hash, new rec. 0 unless the
// token is the family's current one.
var updateRefreshGrantScript = goredis.NewScript(`
local cur = redis.call('HGET', KEYS[1], 'cur')
if not cur or cur ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'rec', ARGV[2])
return 1`)

// touchSession: KEYS[1] session; ARGV the record as read, the new record.
// Writes the new record (keeping the TTL) only if the stored one is still
// the one read: 1 when written, the stored record when it changed
// meanwhile, nil when the session is gone.
var touchSessionScript = goredis.NewScript(`
local v = redis.call('GET', KEYS[1])
if not v then return false end
if v ~= ARGV[1] then return v end
redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
return 1`)

// putDelivery: KEYS outbox queue, outbox hash; ARGV id, value (20-digit
// due, 10-digit attempts, JSON). Replaces the delivery with that id.
var putDeliveryScript = goredis.NewScript(`
local old = redis.call('HGET', KEYS[2], ARGV[1])
if old then redis.call('ZREM', KEYS[1], string.sub(old, 1, 20) .. ARGV[1]) end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[1], 0, string.sub(ARGV[2], 1, 20) .. ARGV[1])
return 1`)

// claimDeliveries: KEYS outbox queue, outbox hash; ARGV due bound (20
// digits, exclusive: now plus 1 ns), new due (20 digits), limit. Moves up
// to limit deliveries due before the bound, earliest first, to the new
// due, adds one to their attempts, and returns their new values. A queue
// member without its delivery is dropped.
var claimDeliveriesScript = goredis.NewScript(`
local ms = redis.call('ZRANGEBYLEX', KEYS[1], '-', '(' .. ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, m in ipairs(ms) do
  local id = string.sub(m, 21)
  local v = redis.call('HGET', KEYS[2], id)
  redis.call('ZREM', KEYS[1], m)
  if v and string.sub(v, 1, 20) == string.sub(m, 1, 20) then
    local a = tonumber(string.sub(v, 21, 30)) + 1
    if a > 9999999999 then a = 9999999999 end
    v = ARGV[2] .. string.format('%010d', a) .. string.sub(v, 31)
    redis.call('HSET', KEYS[2], id, v)
    redis.call('ZADD', KEYS[1], 0, ARGV[2] .. id)
    table.insert(out, v)
  end
end
return out`)

// deleteDelivery: KEYS outbox queue, outbox hash; ARGV id.
var deleteDeliveryScript = goredis.NewScript(`
local old = redis.call('HGET', KEYS[2], ARGV[1])
if not old then return 0 end
redis.call('ZREM', KEYS[1], string.sub(old, 1, 20) .. ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return 1`)
