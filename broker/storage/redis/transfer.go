package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/fedbroker/fedbroker/broker/storage"
)

var (
	_ storage.Exporter = (*Store)(nil)
	_ storage.Importer = (*Store)(nil)
)

// globEscape escapes the characters SCAN's MATCH treats specially.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// scan calls fn with every key matching pattern, on every master of a
// Cluster.
func (s *Store) scan(ctx context.Context, pattern string, fn func(key string) error) error {
	each := func(ctx context.Context, c goredis.Cmdable) error {
		it := c.Scan(ctx, 0, pattern, 500).Iterator()
		for it.Next(ctx) {
			if err := fn(it.Val()); err != nil {
				return err
			}
		}
		if err := it.Err(); err != nil {
			return unavailable("scan", err)
		}
		return nil
	}
	if cc, ok := s.c.(*goredis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, c *goredis.Client) error { return each(ctx, c) })
	}
	return each(ctx, s.c)
}

// until returns when key expires (zero: never or gone).
func (s *Store) until(ctx context.Context, key string) (time.Time, error) {
	d, err := s.c.PTTL(ctx, key).Result()
	if err != nil {
		return time.Time{}, unavailable("pttl", err)
	}
	if d <= 0 {
		return time.Time{}, nil
	}
	return s.now().Add(d), nil
}

// Export hands every live key set, link, refresh family, session,
// revocation, tombstone and pending delivery to fn; see storage.Exporter.
func (s *Store) Export(ctx context.Context, fn func(storage.Item) error) error {
	if err := storage.ExportKeysAndLinks(ctx, s, fn); err != nil {
		return err
	}
	p := globEscape(s.prefix)
	now := s.now()
	err := s.scan(ctx, "{"+p+":fam:*}:f", func(key string) error {
		v, err := s.c.HMGet(ctx, key, "rec", "cur", "lu", "ie").Result()
		if err != nil {
			return unavailable("export family", err)
		}
		rec, ok := v[0].(string)
		cur, _ := v[1].(string)
		if !ok || cur == "" {
			return nil // deleted meanwhile
		}
		lu, _ := v[2].(string)
		ie, _ := v[3].(string)
		f, err := s.family(rec, lu, ie)
		if err != nil {
			return err
		}
		if !now.Before(f.IdleExpiry) || !now.Before(f.AbsoluteExpiry) {
			return nil
		}
		return fn(storage.Item{Family: &storage.FamilyItem{Family: f, CurrentHash: cur}})
	})
	if err != nil {
		return err
	}
	err = s.scan(ctx, "{"+p+":fam:*}:t", func(key string) error {
		id := strings.TrimSuffix(strings.TrimPrefix(key, "{"+s.prefix+":fam:"), "}:t")
		u, err := s.until(ctx, key)
		if err != nil || u.IsZero() {
			return err
		}
		return fn(storage.Item{Tombstone: &storage.TombstoneItem{FamilyID: id, Until: u}})
	})
	if err != nil {
		return err
	}
	err = s.scan(ctx, p+":sess:*", func(key string) error {
		data, err := s.c.Get(ctx, key).Result()
		if isNil(err) {
			return nil
		}
		if err != nil {
			return unavailable("export session", err)
		}
		var se storage.Session
		if err := s.decode("session", data, &se); err != nil {
			return err
		}
		if !now.Before(se.Expiry) {
			return nil
		}
		return fn(storage.Item{Session: &storage.SessionItem{Session: se, Hash: strings.TrimPrefix(key, s.prefix+":sess:")}})
	})
	if err != nil {
		return err
	}
	err = s.scan(ctx, p+":seen:*", func(key string) error {
		ns, id, ok := parseSeenKey(strings.TrimPrefix(key, s.prefix+":seen:"))
		if !ok {
			return nil
		}
		u, err := s.until(ctx, key)
		if err != nil || u.IsZero() {
			return err
		}
		return fn(storage.Item{Seen: &storage.SeenItem{Namespace: ns, ID: id, Until: u}})
	})
	if err != nil {
		return err
	}
	return s.exportDeliveries(ctx, fn)
}

// exportDeliveries hands the outbox's deliveries to fn, read with HSCAN
// (a large outbox is not read in one reply).
func (s *Store) exportDeliveries(ctx context.Context, fn func(storage.Item) error) error {
	key := s.outboxKeys()[1]
	var cursor uint64
	for {
		kv, next, err := s.c.HScan(ctx, key, cursor, "*", 256).Result()
		if err != nil {
			return unavailable("export deliveries", err)
		}
		for i := 0; i+1 < len(kv); i += 2 {
			d, err := s.delivery(kv[i+1])
			if err != nil {
				return err
			}
			d.ID = kv[i]
			if err := fn(storage.Item{Delivery: &d}); err != nil {
				return err
			}
		}
		if cursor = next; cursor == 0 {
			return nil
		}
	}
}

// parseSeenKey splits "<len(ns)>:<ns>:<id>" (see seenKey).
func parseSeenKey(rest string) (ns, id string, ok bool) {
	n, tail, ok := strings.Cut(rest, ":")
	if !ok {
		return "", "", false
	}
	l, err := strconv.Atoi(n)
	if err != nil || l < 0 || len(tail) < l+1 || tail[l] != ':' {
		return "", "", false
	}
	return tail[:l], tail[l+1:], true
}

// Import stores one exported record as the source held it; see
// storage.Importer.
func (s *Store) Import(ctx context.Context, it storage.Item) error {
	now := s.now()
	switch {
	case it.Keys != nil:
		if _, err := s.PutKeys(ctx, it.Keys, 0); err != nil && !errors.Is(err, storage.ErrConflict) {
			return err
		}
	case it.Link != nil:
		_, _, err := s.CreateLink(ctx, *it.Link)
		return err
	case it.Family != nil:
		f := it.Family.Family
		rec, err := encode(f)
		if err != nil {
			return err
		}
		exp := f.Expiry()
		if !now.Before(exp) {
			return nil
		}
		if err := s.indexAdd(ctx, s.subjFamKey(f.Grant.Subject), f.ID, f.AbsoluteExpiry, now); err != nil {
			return err
		}
		if err := createRefreshScript.Run(ctx, s.c, s.famKeys(f.ID),
			rec, it.Family.CurrentHash, ns(f.IdleExpiry), ns(f.AbsoluteExpiry), ms(f.AbsoluteExpiry), ms(exp)).Err(); err != nil {
			return unavailable("import family", err)
		}
	case it.Session != nil:
		se := it.Session.Session
		if !now.Before(se.Expiry) {
			return nil
		}
		rec, err := encode(se)
		if err != nil {
			return err
		}
		for _, idx := range s.sessionIndexes(se) {
			if err := s.indexAdd(ctx, idx, it.Session.Hash, se.Expiry, now); err != nil {
				return err
			}
		}
		return s.setNX(ctx, s.sessKey(it.Session.Hash), rec, se.Expiry)
	case it.Seen != nil:
		return s.setNX(ctx, s.seenKey(it.Seen.Namespace, it.Seen.ID), "1", it.Seen.Until)
	case it.Tombstone != nil:
		return s.setNX(ctx, s.famKeys(it.Tombstone.FamilyID)[2], "1", it.Tombstone.Until)
	case it.Delivery != nil:
		// Left alone when the destination has it (a second copy, or one
		// already sent and claimed again there).
		has, err := s.c.HExists(ctx, s.outboxKeys()[1], it.Delivery.ID).Result()
		if err != nil {
			return unavailable("import delivery", err)
		}
		if has {
			return nil
		}
		return s.PutDelivery(ctx, *it.Delivery)
	default:
		return fmt.Errorf("redis: import: empty item")
	}
	return nil
}

// setNX stores value under key until `until` unless key exists or until
// has passed.
func (s *Store) setNX(ctx context.Context, key, value string, until time.Time) error {
	if !s.now().Before(until) {
		return nil
	}
	err := s.c.SetArgs(ctx, key, value, goredis.SetArgs{Mode: "NX", ExpireAt: time.UnixMilli(ms(until))}).Err()
	if err != nil && !isNil(err) {
		return unavailable("import", err)
	}
	return nil
}
