package redis

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/fedbroker/fedbroker/broker/storage"
)

// Single logout on Redis.
//
// Sessions stay one JSON string each at sessKey. CreateSession indexes a
// session, besides under its subject (subjSessKey), under its upstream
// account (upSubKey) and its upstream session (upSIDKey) when it has them:
// sorted sets of session hashes scored by the session's expiry, like the
// subject index (indexAddScript prunes expired members on every insert).
// An index key is named by a hash of (connector, value), so its length is
// bounded whatever the upstream sends. Readers skip entries whose session
// is gone and never remove them (a session being created is indexed
// before it is written); EndSessions and DeleteSession remove the entries
// of the sessions they delete.
//
// A session's keys and its families' keys live in different hash slots,
// so on Redis Cluster no one script can reach them all: EndSessions is a
// sequence of atomic steps (see there), like RevokeSubject.
//
// The outbox is two keys under one hash tag, {<prefix>:outbox}: a hash of
// the deliveries by id, each value the 20-digit Unix nanoseconds of its
// Due, its Attempts in 10 digits, then its JSON (whose own due and attempts
// the two prefixes override), and a sorted set whose members are that due
// followed by the id, all with score 0, so that ZRANGEBYLEX lists the due
// deliveries earliest first at nanosecond precision. Scripts change both
// atomically.

// upKey names the index of (connector, value) without letting either part
// run into the other.
func upKey(connectorID, v string) string {
	return storage.Hash(strconv.Itoa(len(connectorID)) + ":" + connectorID + v)
}

func (s *Store) upSubKey(connectorID, sub string) string {
	return s.prefix + ":up:sub:" + upKey(connectorID, sub)
}

func (s *Store) upSIDKey(connectorID, sid string) string {
	return s.prefix + ":up:sid:" + upKey(connectorID, sid)
}

// sessionIndexes returns the index keys a session is listed under.
func (s *Store) sessionIndexes(se storage.Session) []string {
	keys := []string{s.subjSessKey(se.Subject)}
	if se.Grant.UpstreamSubject != "" {
		keys = append(keys, s.upSubKey(se.ConnectorID, se.Grant.UpstreamSubject))
	}
	if se.UpstreamSID != "" {
		keys = append(keys, s.upSIDKey(se.ConnectorID, se.UpstreamSID))
	}
	return keys
}

// unindexSession removes the index entries of a deleted session. It is
// best effort: an entry left behind is skipped by readers and pruned when
// its session would have expired.
func (s *Store) unindexSession(ctx context.Context, hash string, se storage.Session) {
	_, err := s.c.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for _, k := range s.sessionIndexes(se) {
			p.ZRem(ctx, k, hash)
		}
		return nil
	})
	if err != nil {
		s.log.Debug("redis: removing session index entries failed", "err", err)
	}
}

// maxTouchAttempts bounds TouchSession's compare-and-set retries.
const maxTouchAttempts = 50

// TouchSession adds clientID to the session's clients and sets LastUsed;
// see storage.SessionStore. The session is read, changed in Go and written
// back by touchSessionScript only if it is still what was read (the
// record's JSON is not rewritten inside Redis, whose cjson would not keep
// it intact), so that concurrent touches and a deletion never lose or
// resurrect anything; a touch that lost a race retries on what won.
func (s *Store) TouchSession(ctx context.Context, id, clientID string, now time.Time) error {
	key := s.sessKey(storage.Hash(id))
	data, err := s.c.Get(ctx, key).Result()
	for attempt := 1; ; attempt++ {
		switch {
		case isNil(err):
			return notFound("session")
		case err != nil:
			return unavailable("touch session", err)
		}
		var se storage.Session
		if err := s.decode("session", data, &se); err != nil {
			return err
		}
		if !s.now().Before(se.Expiry) || s.lost(se.Created) {
			return notFound("session")
		}
		if clientID != "" && !slices.Contains(se.Clients, clientID) {
			se.Clients = append(se.Clients, clientID)
		}
		se.LastUsed = now
		rec, encErr := encode(se)
		if encErr != nil {
			return encErr
		}
		var res any
		res, err = touchSessionScript.Run(ctx, s.c, []string{key}, data, rec).Result()
		if err != nil {
			continue // not found or unavailable, above
		}
		if cur, ok := res.(string); ok {
			if attempt >= maxTouchAttempts {
				return fmt.Errorf("redis: touch session: still changing after %d attempts: %w", attempt, storage.ErrUnavailable)
			}
			data = cur
			continue
		}
		return nil
	}
}

// storedSession is a session read through an index.
type storedSession struct {
	hash string
	se   storage.Session
}

// sessionsOf reads the sessions an index lists and returns the live ones
// that keep accepts, oldest first (by AuthTime, then hash). Entries of
// sessions that are gone, expired, or from before the epoch are skipped.
func (s *Store) sessionsOf(ctx context.Context, op, index string, keep func(storage.Session) bool) ([]storedSession, error) {
	hashes, err := s.c.ZRange(ctx, index, 0, -1).Result()
	if err != nil {
		return nil, unavailable(op, err)
	}
	if len(hashes) == 0 {
		return nil, nil
	}
	cmds := make([]*goredis.StringCmd, len(hashes))
	_, err = s.c.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for i, h := range hashes {
			cmds[i] = p.Get(ctx, s.sessKey(h))
		}
		return nil
	})
	if err != nil && !isNil(err) {
		return nil, unavailable(op, err)
	}
	now := s.now()
	var out []storedSession
	for i, cmd := range cmds {
		data, err := cmd.Result()
		switch {
		case isNil(err):
			continue
		case err != nil:
			return nil, unavailable(op, err)
		}
		var se storage.Session
		if err := s.decode("session", data, &se); err != nil {
			return nil, err
		}
		if !now.Before(se.Expiry) || s.lost(se.Created) || !keep(se) {
			continue
		}
		out = append(out, storedSession{hash: hashes[i], se: se})
	}
	sortSessions(out)
	return out, nil
}

func sortSessions(ss []storedSession) {
	sort.Slice(ss, func(i, j int) bool {
		a, b := ss[i].se.AuthTime, ss[j].se.AuthTime
		if !a.Equal(b) {
			return a.Before(b)
		}
		return ss[i].hash < ss[j].hash
	})
}

func sessionsOnly(ss []storedSession) []storage.Session {
	out := make([]storage.Session, len(ss))
	for i, x := range ss {
		out[i] = x.se
	}
	return out
}

// ListSessions returns the subject's live sessions, oldest first, through
// the subject index.
func (s *Store) ListSessions(ctx context.Context, subject string) ([]storage.Session, error) {
	ss, err := s.sessionsOf(ctx, "list sessions", s.subjSessKey(subject), func(se storage.Session) bool {
		return se.Subject == subject
	})
	if err != nil {
		return nil, err
	}
	return sessionsOnly(ss), nil
}

// UpstreamSessions returns the live sessions of an upstream account or
// upstream session of connectorID, through the upstream session index
// when upstreamSID is set and the upstream account index otherwise.
func (s *Store) UpstreamSessions(ctx context.Context, connectorID, upstreamSub, upstreamSID string) ([]storage.Session, error) {
	var index string
	switch {
	case upstreamSID != "":
		index = s.upSIDKey(connectorID, upstreamSID)
	case upstreamSub != "":
		index = s.upSubKey(connectorID, upstreamSub)
	default:
		return nil, nil
	}
	ss, err := s.sessionsOf(ctx, "upstream sessions", index, func(se storage.Session) bool {
		return se.ConnectorID == connectorID &&
			(upstreamSub == "" || se.Grant.UpstreamSubject == upstreamSub) &&
			(upstreamSID == "" || se.UpstreamSID == upstreamSID)
	})
	if err != nil {
		return nil, err
	}
	return sessionsOnly(ss), nil
}

// EndSessions deletes the subject's session sid (all of them when sid is
// "") and revokes their refresh families; see storage.SessionStore.
//
// The sessions and the families live in different hash slots, so this is
// not one script but a sequence of atomic steps, ordered so that a failure
// part way leaves nothing a retry would miss: (1) the sessions to end are
// read through the subject index; (2) every family of the subject (sid
// ""), or every family whose grant names one of those sessions, is revoked
// by revokeFamilyScript with a tombstone until `until`, each atomically;
// only then (3) each session is deleted with GETDEL, so that what is
// returned is what was deleted (a concurrent TouchSession cannot bring it
// back: it writes only over the record it read), and the epoch ticks with
// it; (4) the deleted sessions' index entries are removed. With sid "" the
// families are revoked through the subject index even when their record is
// not written yet, as RevokeSubject does, so a family being created
// concurrently fails on the tombstone.
func (s *Store) EndSessions(ctx context.Context, subject, sid string, until time.Time) ([]storage.Session, int, error) {
	ended, err := s.sessionsOf(ctx, "end sessions", s.subjSessKey(subject), func(se storage.Session) bool {
		return se.Subject == subject && (sid == "" || se.PublicID == sid)
	})
	if err != nil {
		return nil, 0, err
	}
	if sid != "" && len(ended) == 0 {
		return nil, 0, nil
	}
	sids := map[string]bool{}
	for _, x := range ended {
		sids[x.se.PublicID] = true
	}
	families, err := s.endFamilies(ctx, subject, sids, sid == "", until)
	if err != nil {
		return nil, families, err
	}
	if len(ended) == 0 {
		return nil, families, nil
	}
	cmds := make([]*goredis.StringCmd, len(ended))
	s.thenTick(ctx, func(p goredis.Pipeliner) {
		for i, x := range ended {
			cmds[i] = p.GetDel(ctx, s.sessKey(x.hash))
		}
	})
	var out []storedSession
	for i, cmd := range cmds {
		data, err := cmd.Result()
		switch {
		case isNil(err):
			continue // ended by someone else meanwhile
		case err != nil:
			return nil, families, unavailable("end sessions", err)
		}
		var se storage.Session
		if err := s.decode("session", data, &se); err != nil {
			return nil, families, err
		}
		s.unindexSession(ctx, ended[i].hash, se)
		out = append(out, storedSession{hash: ended[i].hash, se: se})
	}
	sortSessions(out)
	return sessionsOnly(out), families, nil
}

// endFamilies revokes the subject's families whose grant names one of sids
// (every family listed under the subject when all is set) with tombstones
// until `until`, and returns how many live ones it revoked.
func (s *Store) endFamilies(ctx context.Context, subject string, sids map[string]bool, all bool, until time.Time) (int, error) {
	idx := s.subjFamKey(subject)
	ids, err := s.c.ZRange(ctx, idx, 0, -1).Result()
	if err != nil {
		return 0, unavailable("end sessions", err)
	}
	if len(ids) == 0 {
		return 0, nil
	}
	recs := make([]*goredis.StringCmd, len(ids))
	_, err = s.c.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for i, id := range ids {
			recs[i] = p.HGet(ctx, s.famKeys(id)[0], "rec")
		}
		return nil
	})
	if err != nil && !isNil(err) {
		return 0, unavailable("end sessions", err)
	}
	families := 0
	for i, id := range ids {
		rec, err := recs[i].Result()
		if err != nil && !isNil(err) {
			return families, unavailable("end sessions", err)
		}
		counts := false
		if err == nil {
			var f storage.RefreshFamily
			if err := s.decode("refresh family", rec, &f); err != nil {
				return families, err
			}
			if !all && !sids[f.Grant.SessionID] {
				continue
			}
			counts = !s.lost(f.CreatedAt)
		} else if !all {
			continue // no record: not known to be of these sessions
		}
		n, err := s.scriptThenTick(ctx, revokeFamilyScript, s.famKeys(id), ms(until), s.now().UnixMilli()).Int()
		if err != nil {
			return families, unavailable("end sessions", err)
		}
		if n == 1 && counts {
			families++
		}
		if err := s.c.ZRem(ctx, idx, id).Err(); err != nil {
			return families, unavailable("end sessions", err)
		}
	}
	return families, nil
}

func (s *Store) outboxKeys() []string {
	tag := "{" + s.prefix + ":outbox}"
	return []string{tag + ":q", tag + ":d"}
}

// maxDeliveryAttempts is the largest Attempts the outbox keeps (10 digits).
const maxDeliveryAttempts = 9_999_999_999

// deliveryValue is the outbox hash's value of d.
func deliveryValue(d storage.Delivery) (string, error) {
	rec, err := encode(d)
	if err != nil {
		return "", err
	}
	a := min(max(d.Attempts, 0), maxDeliveryAttempts)
	return ns(d.Due) + fmt.Sprintf("%010d", a) + rec, nil
}

// delivery decodes an outbox hash value.
func (s *Store) delivery(v string) (storage.Delivery, error) {
	var d storage.Delivery
	if len(v) < 30 {
		return d, fmt.Errorf("redis: corrupt delivery %q: %w", v, storage.ErrUnavailable)
	}
	due, err1 := strconv.ParseInt(v[:20], 10, 64)
	a, err2 := strconv.Atoi(v[20:30])
	if err1 != nil || err2 != nil {
		return d, fmt.Errorf("redis: corrupt delivery %q: %w", v[:30], storage.ErrUnavailable)
	}
	if err := s.decode("delivery", v[30:], &d); err != nil {
		return d, err
	}
	d.Due, d.Attempts = time.Unix(0, due), a
	return d, nil
}

// PutDelivery stores d, replacing the delivery with its ID.
func (s *Store) PutDelivery(ctx context.Context, d storage.Delivery) error {
	v, err := deliveryValue(d)
	if err != nil {
		return err
	}
	if err := putDeliveryScript.Run(ctx, s.c, s.outboxKeys(), d.ID, v).Err(); err != nil {
		return unavailable("put delivery", err)
	}
	return nil
}

// ClaimDeliveries takes up to limit due deliveries for lease, in one
// script; see storage.Outbox.
func (s *Store) ClaimDeliveries(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]storage.Delivery, error) {
	if limit <= 0 {
		return nil, nil
	}
	due := now.Add(lease)
	res, err := claimDeliveriesScript.Run(ctx, s.c, s.outboxKeys(), ns(now.Add(time.Nanosecond)), ns(due), limit).StringSlice()
	if err != nil && !isNil(err) {
		return nil, unavailable("claim deliveries", err)
	}
	out := make([]storage.Delivery, 0, len(res))
	for _, v := range res {
		d, err := s.delivery(v)
		if err != nil {
			return nil, err
		}
		d.Due = due
		out = append(out, d)
	}
	return out, nil
}

// DeleteDelivery removes the delivery id.
func (s *Store) DeleteDelivery(ctx context.Context, id string) error {
	if err := deleteDeliveryScript.Run(ctx, s.c, s.outboxKeys(), id).Err(); err != nil {
		return unavailable("delete delivery", err)
	}
	return nil
}

// PendingDeliveries returns how many deliveries are stored.
func (s *Store) PendingDeliveries(ctx context.Context) (int, error) {
	n, err := s.c.HLen(ctx, s.outboxKeys()[1]).Result()
	if err != nil {
		return 0, unavailable("pending deliveries", err)
	}
	return int(n), nil
}
