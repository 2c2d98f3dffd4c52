package redis

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/fedbroker/fedbroker/broker/storage"
)

func encode(v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("redis: encode: %w", err)
	}
	return string(b), nil
}

func (s *Store) decode(what, data string, v any) error {
	if err := json.Unmarshal([]byte(data), v); err != nil {
		s.log.Warn("redis: corrupt record", "kind", what, "err", err)
		return fmt.Errorf("redis: corrupt %s: %v: %w", what, err, storage.ErrUnavailable)
	}
	return nil
}

// CreateAuthRequest stores r until r.Expiry; ErrAlreadyExists if r.ID is
// taken. A request that expired already is not written.
func (s *Store) CreateAuthRequest(ctx context.Context, r storage.AuthRequest) error {
	rec, err := encode(r)
	if err != nil {
		return err
	}
	if !s.now().Before(r.Expiry) {
		return nil
	}
	err = s.c.SetArgs(ctx, s.authReqKey(r.ID), rec, goredis.SetArgs{Mode: "NX", ExpireAt: time.UnixMilli(ms(r.Expiry))}).Err()
	switch {
	case isNil(err):
		return fmt.Errorf("redis: auth request: %w", storage.ErrAlreadyExists)
	case err != nil:
		return unavailable("create auth request", err)
	}
	return nil
}

// GetAuthRequest returns the request with that id.
func (s *Store) GetAuthRequest(ctx context.Context, id string) (storage.AuthRequest, error) {
	data, err := s.c.Get(ctx, s.authReqKey(id)).Result()
	return s.authRequest("get auth request", data, err)
}

func (s *Store) authRequest(op, data string, err error) (storage.AuthRequest, error) {
	var r storage.AuthRequest
	switch {
	case isNil(err):
		return r, notFound("auth request")
	case err != nil:
		return r, unavailable(op, err)
	}
	if err := s.decode("auth request", data, &r); err != nil {
		return r, err
	}
	if !s.now().Before(r.Expiry) {
		return storage.AuthRequest{}, notFound("auth request")
	}
	return r, nil
}

// UpdateAuthRequest replaces a live request, keeping its TTL.
func (s *Store) UpdateAuthRequest(ctx context.Context, r storage.AuthRequest) error {
	rec, err := encode(r)
	if err != nil {
		return err
	}
	err = s.c.SetArgs(ctx, s.authReqKey(r.ID), rec, goredis.SetArgs{Mode: "XX", KeepTTL: true}).Err()
	switch {
	case isNil(err):
		return notFound("auth request")
	case err != nil:
		return unavailable("update auth request", err)
	}
	return nil
}

// TakeAuthRequest returns and deletes the request atomically (GETDEL).
func (s *Store) TakeAuthRequest(ctx context.Context, id string) (storage.AuthRequest, error) {
	data, err := s.c.GetDel(ctx, s.authReqKey(id)).Result()
	return s.authRequest("take auth request", data, err)
}

// CreateCode stores c under storage.Hash(code) until c.Expiry.
func (s *Store) CreateCode(ctx context.Context, code string, c storage.AuthCode) error {
	rec, err := encode(c)
	if err != nil {
		return err
	}
	if !s.now().Before(c.Expiry) {
		return nil
	}
	fields, err := codeFields(c)
	if err != nil {
		return err
	}
	n, err := createCodeScript.Run(ctx, s.c, []string{s.codeKey(storage.Hash(code))}, append([]any{rec, ms(c.Expiry)}, fields...)...).Int()
	switch {
	case err != nil:
		return unavailable("create code", err)
	case n == 0:
		return fmt.Errorf("redis: code: %w", storage.ErrAlreadyExists)
	}
	return nil
}

// ConsumeCode marks the code used and returns it; see storage.Storage.
func (s *Store) ConsumeCode(ctx context.Context, code string) (storage.AuthCode, error) {
	return s.consumeCode(ctx, code, "")
}

// consumeCode is ConsumeCode that sets the code's family id to famID
// ("" keeps it) on its first consumption (see storage.Redemption).
func (s *Store) consumeCode(ctx context.Context, code, famID string) (storage.AuthCode, error) {
	var c storage.AuthCode
	res, err := s.scriptThenTick(ctx, consumeCodeScript, []string{s.codeKey(storage.Hash(code))}, famID).Slice()
	switch {
	case isNil(err):
		return c, notFound("code")
	case err != nil:
		return c, unavailable("consume code", err)
	}
	rec, _ := res[0].(string)
	used, _ := res[1].(int64)
	if err := s.decode("code", rec, &c); err != nil {
		return storage.AuthCode{}, err
	}
	if fid, _ := res[2].(string); fid != "" {
		c.FamilyID = fid
	}
	if !s.now().Before(c.Expiry) || s.lost(c.Created) {
		return storage.AuthCode{}, notFound("code")
	}
	if used != 1 {
		return c, fmt.Errorf("redis: code: %w", storage.ErrAlreadyUsed)
	}
	return c, nil
}

// CreateSession stores se under storage.Hash(se.ID) until se.Expiry and
// indexes it under its subject, and under its upstream account and
// upstream session when it has them (see logout.go). The indexes are
// written first: an entry without its session is skipped by readers, a
// session without its entries would be missed by a logout.
func (s *Store) CreateSession(ctx context.Context, se storage.Session) error {
	rec, err := encode(se) // Session.ID is not part of the JSON form.
	if err != nil {
		return err
	}
	now := s.now()
	if !now.Before(se.Expiry) {
		return nil
	}
	h := storage.Hash(se.ID)
	for _, idx := range s.sessionIndexes(se) {
		if err := s.indexAdd(ctx, idx, h, se.Expiry, now); err != nil {
			return err
		}
	}
	err = s.c.SetArgs(ctx, s.sessKey(h), rec, goredis.SetArgs{Mode: "NX", ExpireAt: time.UnixMilli(ms(se.Expiry))}).Err()
	switch {
	case isNil(err):
		return fmt.Errorf("redis: session: %w", storage.ErrAlreadyExists)
	case err != nil:
		return unavailable("create session", err)
	}
	return nil
}

// GetSession returns the session whose cookie secret is id, with ID set.
func (s *Store) GetSession(ctx context.Context, id string) (storage.Session, error) {
	var se storage.Session
	data, err := s.c.Get(ctx, s.sessKey(storage.Hash(id))).Result()
	switch {
	case isNil(err):
		return se, notFound("session")
	case err != nil:
		return se, unavailable("get session", err)
	}
	if err := s.decode("session", data, &se); err != nil {
		return storage.Session{}, err
	}
	if !s.now().Before(se.Expiry) || s.lost(se.Created) {
		return storage.Session{}, notFound("session")
	}
	se.ID = id
	return se, nil
}

// DeleteSession deletes the session; ErrNotFound if there is none. Its
// index entries are then removed, best effort: one left behind is skipped
// and pruned when the session would have expired.
func (s *Store) DeleteSession(ctx context.Context, id string) error {
	h := storage.Hash(id)
	var del *goredis.StringCmd
	s.thenTick(ctx, func(p goredis.Pipeliner) { del = p.GetDel(ctx, s.sessKey(h)) })
	data, err := del.Result()
	switch {
	case isNil(err):
		return notFound("session")
	case err != nil:
		return unavailable("delete session", err)
	}
	var se storage.Session
	if json.Unmarshal([]byte(data), &se) == nil {
		s.unindexSession(ctx, h, se)
	}
	return nil
}

// indexAdd adds member to a subject index that lives at least until exp.
func (s *Store) indexAdd(ctx context.Context, key, member string, exp, now time.Time) error {
	if err := indexAddScript.Run(ctx, s.c, []string{key}, member, ms(exp), now.UnixMilli()).Err(); err != nil {
		return unavailable("index subject", err)
	}
	return nil
}

// GetKeys returns the key set and its version.
func (s *Store) GetKeys(ctx context.Context) ([]byte, int64, error) {
	v, err := s.c.HMGet(ctx, s.keysKey(), "data", "ver").Result()
	if err != nil {
		return nil, 0, unavailable("get keys", err)
	}
	data, ok1 := v[0].(string)
	ver, ok2 := v[1].(string)
	if !ok1 || !ok2 {
		return nil, 0, notFound("keys")
	}
	n, err := strconv.ParseInt(ver, 10, 64)
	if err != nil {
		return nil, 0, fmt.Errorf("redis: corrupt keys version %q: %w", ver, storage.ErrUnavailable)
	}
	return []byte(data), n, nil
}

// PutKeys stores data if the stored version is still expect.
func (s *Store) PutKeys(ctx context.Context, data []byte, expect int64) (int64, error) {
	res, err := putKeysScript.Run(ctx, s.c, []string{s.keysKey()}, data, expect).Int64Slice()
	if err != nil {
		return 0, unavailable("put keys", err)
	}
	if res[0] != 1 {
		return 0, fmt.Errorf("redis: keys version %d, expected %d: %w", res[1], expect, storage.ErrConflict)
	}
	s.publishKeys(ctx, res[1])
	return res[1], nil
}

// AcquireLease takes or renews the named lease for holder.
func (s *Store) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	n, err := acquireLeaseScript.Run(ctx, s.c, []string{s.leaseKey(name)}, holder, msTTL(ttl)).Int()
	if err != nil {
		return false, unavailable("acquire lease", err)
	}
	return n == 1, nil
}

// MarkSeen records id in namespace until `until` (SET NX).
func (s *Store) MarkSeen(ctx context.Context, namespace, id string, until time.Time) (bool, error) {
	if !s.now().Before(until) {
		// Nothing to remember; report whether it is still recorded.
		n, err := s.c.Exists(ctx, s.seenKey(namespace, id)).Result()
		if err != nil {
			return false, unavailable("mark seen", err)
		}
		return n == 0, nil
	}
	var set *goredis.StatusCmd
	s.thenTick(ctx, func(p goredis.Pipeliner) {
		set = p.SetArgs(ctx, s.seenKey(namespace, id), "1", goredis.SetArgs{Mode: "NX", ExpireAt: time.UnixMilli(ms(until))})
	})
	err := set.Err()
	switch {
	case isNil(err):
		return false, nil
	case err != nil:
		return false, unavailable("mark seen", err)
	}
	return true, nil
}

// CreateLink stores l unless l.Key exists, and returns the stored link.
func (s *Store) CreateLink(ctx context.Context, l storage.Link) (storage.Link, bool, error) {
	rec, err := encode(l)
	if err != nil {
		return storage.Link{}, false, err
	}
	res, err := createLinkScript.Run(ctx, s.c, []string{s.linkKey(l.Key), s.linkIndexKey()}, rec, l.Key).Slice()
	if err != nil {
		return storage.Link{}, false, unavailable("create link", err)
	}
	stored, _ := res[0].(string)
	created, _ := res[1].(int64)
	var got storage.Link
	if err := s.decode("link", stored, &got); err != nil {
		return storage.Link{}, false, err
	}
	return got, created == 1, nil
}

// GetLink returns the link of key.
func (s *Store) GetLink(ctx context.Context, key string) (storage.Link, error) {
	var l storage.Link
	data, err := s.c.Get(ctx, s.linkKey(key)).Result()
	switch {
	case isNil(err):
		return l, notFound("link")
	case err != nil:
		return l, unavailable("get link", err)
	}
	err = s.decode("link", data, &l)
	return l, err
}

// ListLinks returns every link, in no particular order.
func (s *Store) ListLinks(ctx context.Context) ([]storage.Link, error) {
	keys, err := s.c.SMembers(ctx, s.linkIndexKey()).Result()
	if err != nil {
		return nil, unavailable("list links", err)
	}
	out := make([]storage.Link, 0, len(keys))
	const batch = 500
	for len(keys) > 0 {
		n := min(batch, len(keys))
		rk := make([]string, n)
		for i, k := range keys[:n] {
			rk[i] = s.linkKey(k)
		}
		keys = keys[n:]
		vals, err := s.c.MGet(ctx, rk...).Result()
		if err != nil {
			return nil, unavailable("list links", err)
		}
		for _, v := range vals {
			data, ok := v.(string)
			if !ok {
				continue // deleted since SMEMBERS
			}
			var l storage.Link
			if err := s.decode("link", data, &l); err != nil {
				return nil, err
			}
			out = append(out, l)
		}
	}
	return out, nil
}

// DeleteLink deletes the link of key; ErrNotFound if there is none.
func (s *Store) DeleteLink(ctx context.Context, key string) error {
	n, err := deleteLinkScript.Run(ctx, s.c, []string{s.linkKey(key), s.linkIndexKey()}, key).Int()
	switch {
	case err != nil:
		return unavailable("delete link", err)
	case n == 0:
		return notFound("link")
	}
	return nil
}
