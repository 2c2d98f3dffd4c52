package redis

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/fedbroker/fedbroker/broker/storage"
)

// One round trip per grant.
//
// On a single server or a Sentinel-managed primary, RedeemCode and
// RefreshGrant are one Lua script each, which also ticks the epoch
// (tickedScript): one round trip and one command per grant. The redemption script reaches keys
// it learns from the code's record (the ended-session marker of its sid,
// the subject's family index): Redis allows that outside Cluster. So that
// the script can start the family without decoding and re-encoding the
// grant, CreateCode keeps beside the code's record the grant's JSON
// without its DPoP key ('g') and what the script decides on: 'sid',
// 'sub', and 'off' ("1" when the grant asks offline_access and the
// connector set no limit; "u" when it set RefreshUntil, whose family this
// store then starts in a second step). The family's JSON is the grant's
// between a prefix and a suffix made here, byte for byte what
// CreateRefresh stores. A code stored without those fields (by an older
// version) is consumed by the script, and its session check and family
// start follow in steps.
//
// On Redis Cluster a script may touch one slot only, and the code, the
// markers, the subject index and the family live in different slots:
// RedeemCode there records the proof, consumes the code (setting its new
// family id in the same script), checks the session and starts the family
// one step after the other, as the token endpoint did before; a replay
// between the steps is caught as before (the family is revoked first, and
// CreateRefresh refuses), and a logout between the session check and the
// family's start by checking the session again once the family exists
// (redeemRest). RefreshGrant there records the proof first, then
// checks and rotates in one script (the family's keys share a slot): two
// round trips.
//
// The refresh script decodes the family's record with cjson to check it
// (client, DPoP key, scopes, connector, connector data): reading only, so
// that nothing of the grant is re-encoded.

// redeemCodeScript: KEYS code, proof marker (or the code again), family,
// legacy rotated set, tombstone; ARGV proof until ms ("" none), ended
// session key prefix, new family id, first token hash ("" no family),
// family JSON prefix, family JSON suffix, DPoP field for the family's
// grant ("" none), idle expiry ns, absolute expiry ns, absolute expiry ms,
// expire-at ms, subject index key prefix, now ms.
// {-3} proof seen (nothing done), {-1} no code, {0, rec, family id set by
// the first redemption or ""} used before, {3, rec} consumed, stored by an
// older version (no session check, no family), {2, rec} consumed, session
// ended, {1, rec, f} consumed, f "f" family started, "u" family to start
// by the caller (RefreshUntil), "" none.
var redeemCodeScript = newTickedScript(`
if ARGV[1] ~= '' then
  if not redis.call('SET', KEYS[2], '1', 'NX', 'PXAT', ARGV[1]) then return {-3} end
end
local c = redis.call('HMGET', KEYS[1], 'rec', 'g', 'sid', 'sub', 'off', 'fid')
if not c[1] then return {-1} end
local n = redis.call('HINCRBY', KEYS[1], 'used', 1)
if n ~= 1 then return {0, c[1], c[6] or ''} end
redis.call('HSET', KEYS[1], 'fid', ARGV[3])
if not c[2] or not c[4] then return {3, c[1]} end
if c[3] and c[3] ~= '' and redis.call('EXISTS', ARGV[2] .. c[3]) == 1 then return {2, c[1]} end
if ARGV[4] == '' or c[5] ~= '1' then return {1, c[1], c[5] or ''} end
if redis.call('EXISTS', KEYS[5]) == 1 or redis.call('EXISTS', KEYS[3]) == 1 then return {1, c[1], ''} end
local g = c[2]
if ARGV[7] ~= '' then g = string.sub(g, 1, -2) .. ARGV[7] .. '}' end
redis.call('HSET', KEYS[3], 'rec', ARGV[5] .. g .. ARGV[6], 'cur', ARGV[4], 'ien', ARGV[8], 'aen', ARGV[9], 'aems', ARGV[10])
redis.call('PEXPIREAT', KEYS[3], ARGV[11])
local idx = ARGV[12] .. c[4]
redis.call('ZREMRANGEBYSCORE', idx, '-inf', '(' .. ARGV[13])
redis.call('ZADD', idx, ARGV[10], ARGV[3])
local left = redis.call('PTTL', idx)
if left < 0 or tonumber(ARGV[13]) + left < tonumber(ARGV[10]) then
  redis.call('PEXPIREAT', idx, ARGV[10])
end
return {1, c[1], 'f'}`)

// refreshGrantScript is rotateRefreshScript with, first, the proof's
// record, and, before a current token is rotated, the checks of
// storage.Rotation. KEYS family, legacy rotated set, tombstone, proof
// marker (or the family again); ARGV those of rotateRefreshScript, then
// proof until ms ("" none), client id, DPoP key thumbprint, scopes asked
// (space-separated), connector ids (each between newlines). Answers those
// of rotateRefreshScript, and {-3} proof seen (nothing done), {3, rec,
// last used, idle expiry} a current token whose family fails a check
// (nothing changed).
var refreshGrantScript = newTickedScript(`
if ARGV[10] ~= '' then
  if not redis.call('SET', KEYS[4], '1', 'NX', 'PXAT', ARGV[10]) then return {-3} end
end
` + rotateCheck + `local function meets(rec)
  local ok, fam = pcall(cjson.decode, rec)
  if not ok or type(fam) ~= 'table' or type(fam.grant) ~= 'table' then return false end
  local g = fam.grant
  if g.client_id ~= ARGV[11] then return false end
  if g.dpop_jkt ~= nil and g.dpop_jkt ~= '' and g.dpop_jkt ~= ARGV[12] then return false end
  if g.connector_data ~= nil then return false end
  if type(g.connector_id) ~= 'string' or not string.find(ARGV[14], '\n' .. g.connector_id .. '\n', 1, true) then return false end
  if ARGV[13] ~= '' then
    if type(g.scopes) ~= 'table' then return false end
    local have = {}
    for _, sc in ipairs(g.scopes) do have[sc] = true end
    for sc in string.gmatch(ARGV[13], '%S+') do
      if not have[sc] then return false end
    end
  end
  return true
end
if not meets(f[1]) then return {3, f[1], f[9] or '', f[10] or ''} end
` + rotateWrite)

var _ storage.GrantStore = (*Store)(nil)

// redeemStepHook, when set by a test, runs in redeemRest between the
// session check and the family's start.
var redeemStepHook func()

// oneSlot reports whether a script may reach keys of any slot: a single
// server or a Sentinel-managed primary, not Redis Cluster.
func (s *Store) oneSlot() bool {
	_, ok := s.c.(*goredis.Client)
	return ok
}

// codeFields are what CreateCode keeps beside a code's record for
// redeemCodeScript (see the top of this file): field, value pairs.
func codeFields(c storage.AuthCode) ([]any, error) {
	g := c.Grant
	g.DPoPJKT = ""
	gj, err := encode(g)
	if err != nil {
		return nil, err
	}
	out := []any{"g", gj, "sub", c.Grant.Subject}
	if c.Grant.SessionID != "" {
		out = append(out, "sid", c.Grant.SessionID)
	}
	if slices.Contains(c.Grant.Scopes, "offline_access") && !c.Grant.NoRefresh {
		off := "1"
		if !c.Grant.RefreshUntil.IsZero() {
			off = "u"
		}
		out = append(out, "off", off)
	}
	return out, nil
}

// zeroGrant is the JSON of an empty grant, which familyJSON cuts out.
var zeroGrant = func() string {
	s, _ := encode(storage.Grant{})
	return `"grant":` + s
}()

// familyJSON returns the JSON of f without its grant, as the prefix and
// suffix to put around the grant's JSON.
func familyJSON(f storage.RefreshFamily) (string, string, error) {
	f.Grant = storage.Grant{}
	s, err := encode(f)
	if err != nil {
		return "", "", err
	}
	i := strings.Index(s, zeroGrant)
	if i < 0 {
		return "", "", fmt.Errorf("redis: encode family: no grant in %s", s)
	}
	return s[:i+len(`"grant":`)], s[i+len(zeroGrant):], nil
}

// RedeemCode consumes a code and starts its family; see
// storage.GrantStore, and the top of this file for the steps on Redis
// Cluster.
func (s *Store) RedeemCode(ctx context.Context, code string, r storage.Redemption) (storage.Redeemed, error) {
	if r.RefreshToken != "" {
		if id, ok := familyOf(r.RefreshToken); !ok || id != r.FamilyID {
			return storage.Redeemed{}, errWrongFamily
		}
	}
	if !s.oneSlot() {
		return s.redeemInSteps(ctx, code, r)
	}
	// The family as the script starts it when the grant sets no
	// RefreshUntil (off = "1"): its grant, between prefix and suffix, is
	// the code's, with the family's DPoP key.
	absolute := r.Now.Add(r.RefreshAbsolute)
	fam := r.NewFamily(storage.Grant{}, absolute)
	prefix, suffix, err := familyJSON(fam)
	if err != nil {
		return storage.Redeemed{}, err
	}
	jkt := ""
	if r.DPoPJKT != "" {
		b, err := encode(r.DPoPJKT)
		if err != nil {
			return storage.Redeemed{}, err
		}
		jkt = `,"dpop_jkt":` + b
	}
	hash, proofUntil, proofKey := "", "", s.codeKey(storage.Hash(code))
	if r.RefreshToken != "" {
		hash = storage.Hash(r.RefreshToken)
	}
	if r.Proof.ID != "" {
		proofUntil, proofKey = strconv.FormatInt(ms(r.Proof.Until), 10), s.seenKey(r.Proof.Namespace, r.Proof.ID)
	}
	keys := append([]string{s.codeKey(storage.Hash(code)), proofKey}, s.famKeys(r.FamilyID)...)
	res, err := s.scriptThenTick(ctx, redeemCodeScript, keys,
		proofUntil, s.seenKey(r.EndedSessions, ""), r.FamilyID, hash, prefix, suffix, jkt,
		ns(fam.IdleExpiry), ns(fam.AbsoluteExpiry), ms(fam.AbsoluteExpiry), ms(fam.Expiry()),
		s.subjFamKey(""), s.now().UnixMilli()).Slice()
	if err != nil {
		return storage.Redeemed{}, unavailable("redeem code", err)
	}
	status, _ := res[0].(int64)
	switch status {
	case -3:
		return storage.Redeemed{}, fmt.Errorf("redis: proof: %w", storage.ErrSeen)
	case -1:
		return storage.Redeemed{}, notFound("code")
	}
	rec, _ := res[1].(string)
	var out storage.Redeemed
	if err := s.decode("code", rec, &out.Code); err != nil {
		return storage.Redeemed{}, err
	}
	if status == 0 {
		if fid, _ := res[2].(string); fid != "" {
			out.Code.FamilyID = fid
		}
		return s.codeUsed(out.Code)
	}
	out.Code.FamilyID = r.FamilyID
	var started string
	if len(res) > 2 {
		started, _ = res[2].(string)
	}
	if started == "f" {
		fam.Grant = out.Code.Grant
		fam.Grant.DPoPJKT = r.DPoPJKT
		out.Family = &fam
	}
	if !s.now().Before(out.Code.Expiry) || s.lost(out.Code.Created) {
		// Expired on this clock, or from before a loss: not found, and
		// the family the script started for it is revoked.
		if out.Family != nil {
			if err := s.RevokeFamily(ctx, r.FamilyID, out.Family.AbsoluteExpiry); err != nil {
				return storage.Redeemed{}, err
			}
		}
		return storage.Redeemed{}, notFound("code")
	}
	switch {
	case status == 2:
		out.SessionEnded = true
		return out, nil
	case status == 3:
		return s.redeemRest(ctx, out, r, true)
	case started == "u":
		return s.redeemRest(ctx, out, r, false)
	}
	return out, nil
}

// codeUsed answers a code consumed before, or expired or lost meanwhile.
func (s *Store) codeUsed(c storage.AuthCode) (storage.Redeemed, error) {
	if !s.now().Before(c.Expiry) || s.lost(c.Created) {
		return storage.Redeemed{}, notFound("code")
	}
	return storage.Redeemed{Code: c}, fmt.Errorf("redis: code: %w", storage.ErrAlreadyUsed)
}

// redeemInSteps is RedeemCode on Redis Cluster: the proof, the code, the
// session and the family one after the other (see the top of this file).
func (s *Store) redeemInSteps(ctx context.Context, code string, r storage.Redemption) (storage.Redeemed, error) {
	if r.Proof.ID != "" {
		fresh, err := s.MarkSeen(ctx, r.Proof.Namespace, r.Proof.ID, r.Proof.Until)
		if err != nil {
			return storage.Redeemed{}, err
		}
		if !fresh {
			return storage.Redeemed{}, fmt.Errorf("redis: proof: %w", storage.ErrSeen)
		}
	}
	c, err := s.consumeCode(ctx, code, r.FamilyID)
	if err != nil {
		return storage.Redeemed{Code: c}, err
	}
	return s.redeemRest(ctx, storage.Redeemed{Code: c}, r, true)
}

// redeemRest completes the redemption of a consumed code in steps: the
// session check (when checkSession) and the family's start.
func (s *Store) redeemRest(ctx context.Context, out storage.Redeemed, r storage.Redemption, checkSession bool) (storage.Redeemed, error) {
	g := out.Code.Grant
	if checkSession && g.SessionID != "" {
		notEnded, err := s.MarkSeen(ctx, r.EndedSessions, g.SessionID, time.Time{})
		if err != nil {
			return storage.Redeemed{}, err
		}
		if !notEnded {
			out.SessionEnded = true
			return out, nil
		}
	}
	absolute, ok := r.StartsFamily(g)
	if !ok {
		return out, nil
	}
	fam := r.NewFamily(g, absolute)
	if redeemStepHook != nil {
		redeemStepHook()
	}
	switch err := s.CreateRefresh(ctx, fam, r.RefreshToken); {
	case err == nil:
		out.Family = &fam
	case errors.Is(err, storage.ErrNotFound), errors.Is(err, storage.ErrAlreadyExists):
		// Revoked by a replay between the steps: no family.
		return out, nil
	default:
		return storage.Redeemed{}, err
	}
	if g.SessionID == "" {
		return out, nil
	}
	// A logout writes its session's marker before it looks for the
	// session's families (logout.Service.End): one that ended the session
	// between the check above (or the script's) and CreateRefresh did not
	// see this family, and its marker is there now.
	notEnded, err := s.MarkSeen(ctx, r.EndedSessions, g.SessionID, time.Time{})
	if err != nil {
		return storage.Redeemed{}, err // the family's token was never given out
	}
	if !notEnded {
		if err := s.RevokeFamily(ctx, fam.ID, fam.AbsoluteExpiry); err != nil {
			return storage.Redeemed{}, err
		}
		out.Family, out.SessionEnded = nil, true
	}
	return out, nil
}

// RefreshGrant checks and rotates a refresh token in one script; see
// storage.GrantStore. On Redis Cluster the proof is recorded first, in a
// round trip of its own.
func (s *Store) RefreshGrant(ctx context.Context, r storage.Rotation) (storage.RefreshFamily, []byte, error) {
	proofUntil := ""
	id, ok := familyOf(r.Old)
	if r.Proof.ID != "" && (!ok || !s.oneSlot()) {
		fresh, err := s.MarkSeen(ctx, r.Proof.Namespace, r.Proof.ID, r.Proof.Until)
		if err != nil {
			return storage.RefreshFamily{}, nil, err
		}
		if !fresh {
			return storage.RefreshFamily{}, nil, fmt.Errorf("redis: proof: %w", storage.ErrSeen)
		}
	}
	if !ok {
		return storage.RefreshFamily{}, nil, notFound("refresh token")
	}
	if nid, ok := familyOf(r.Next); !ok || nid != id {
		return storage.RefreshFamily{}, nil, errWrongFamily
	}
	keys := s.famKeys(id)
	proofKey := keys[0]
	if r.Proof.ID != "" && s.oneSlot() {
		proofUntil, proofKey = strconv.FormatInt(ms(r.Proof.Until), 10), s.seenKey(r.Proof.Namespace, r.Proof.ID)
	}
	ie := r.Now.Add(r.Idle)
	var sealed, cutoff string
	if r.Retry.Window > 0 {
		sealed, cutoff = string(r.Retry.SealedNext), ns(r.Now.Add(-r.Retry.Window))
	}
	res, err := s.scriptThenTick(ctx, refreshGrantScript, append(keys, proofKey),
		storage.Hash(r.Old), storage.Hash(r.Next), ns(r.Now),
		r.Now.Format(time.RFC3339Nano), ie.Format(time.RFC3339Nano), ns(ie), ms(ie), sealed, cutoff,
		proofUntil, r.ClientID, r.DPoPJKT, strings.Join(r.Scopes, " "), "\n"+strings.Join(r.Connectors, "\n")+"\n").Slice()
	if err != nil {
		return storage.RefreshFamily{}, nil, unavailable("refresh grant", err)
	}
	return s.rotated(id, res)
}
