package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/fedbroker/fedbroker/broker/storage"
)

var (
	_ storage.Exporter     = (*Store)(nil)
	_ storage.Importer     = (*Store)(nil)
	_ storage.EpochStarter = (*Store)(nil)
)

// Export hands every live key set, link, refresh family, tombstone,
// session and MarkSeen record, and every pending delivery, to fn; see storage.Exporter. Each table is
// read in one query; rows written meanwhile may or may not be seen.
func (s *Store) Export(ctx context.Context, fn func(storage.Item) error) error {
	if err := storage.ExportKeysAndLinks(ctx, s, fn); err != nil {
		return err
	}
	now := ns(s.now())
	err := s.each(ctx, "export families", `SELECT id, `+familyCols+` FROM refresh_families WHERE expires > $1`, []any{now},
		func(rows *sql.Rows) error {
			var id string
			var r famRow
			if err := rows.Scan(append([]any{&id}, r.dest()...)...); err != nil {
				return err
			}
			if !r.cur.Valid {
				return fn(storage.Item{Tombstone: &storage.TombstoneItem{FamilyID: id, Until: fromNS(r.expires)}})
			}
			f, err := s.family(id, &r)
			if err != nil {
				return err
			}
			return fn(storage.Item{Family: &storage.FamilyItem{Family: f, CurrentHash: r.cur.String}})
		})
	if err != nil {
		return err
	}
	err = s.each(ctx, "export sessions", `SELECT hash, data FROM sessions WHERE expiry > $1`, []any{now},
		func(rows *sql.Rows) error {
			var hash string
			var data []byte
			if err := rows.Scan(&hash, &data); err != nil {
				return err
			}
			var se storage.Session
			if err := s.decode("session", data, &se); err != nil {
				return err
			}
			return fn(storage.Item{Session: &storage.SessionItem{Session: se, Hash: hash}})
		})
	if err != nil {
		return err
	}
	err = s.each(ctx, "export seen", `SELECT namespace, id, until FROM seen WHERE until > $1`, []any{now},
		func(rows *sql.Rows) error {
			var it storage.SeenItem
			var until int64
			if err := rows.Scan(&it.Namespace, &it.ID, &until); err != nil {
				return err
			}
			it.Until = fromNS(until)
			return fn(storage.Item{Seen: &it})
		})
	if err != nil {
		return err
	}
	return s.each(ctx, "export deliveries", `SELECT id, due, attempts, data FROM deliveries`, nil,
		func(rows *sql.Rows) error {
			var (
				d             storage.Delivery
				id            string
				due, attempts int64
				data          []byte
			)
			if err := rows.Scan(&id, &due, &attempts, &data); err != nil {
				return err
			}
			if err := s.decode("delivery", data, &d); err != nil {
				return err
			}
			d.ID, d.Due, d.Attempts = id, fromNS(due), int(attempts)
			return fn(storage.Item{Delivery: &d})
		})
}

// each runs query on the readers and calls fn for every row. An error of
// fn stops it and is returned as is; a database error is unavailable.
func (s *Store) each(ctx context.Context, op, query string, args []any, fn func(*sql.Rows) error) error {
	rows, err := s.r.QueryContext(ctx, query, args...)
	if err != nil {
		return s.unavailable(op, err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := fn(rows); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return s.unavailable(op, err)
	}
	return nil
}

// Import stores one exported record as the source held it, leaving a
// record that exists alone; see storage.Importer.
func (s *Store) Import(ctx context.Context, it storage.Item) error {
	now := s.now()
	switch {
	case it.Keys != nil:
		if _, err := s.PutKeys(ctx, it.Keys, 0); err != nil && !errors.Is(err, storage.ErrConflict) {
			return err
		}
		return nil
	case it.Link != nil:
		_, _, err := s.CreateLink(ctx, *it.Link)
		return err
	case it.Family != nil:
		f := it.Family.Family
		exp := f.Expiry()
		if !now.Before(exp) {
			return nil
		}
		g, err := encode(f.Grant)
		if err != nil {
			return err
		}
		_, err = s.w.ExecContext(ctx, `INSERT INTO refresh_families
	(id, expires, subject, grant_data, created_at, last_used, idle_expiry, abs_expiry, cur, gen)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0)
ON CONFLICT (id) DO NOTHING`,
			f.ID, ns(exp), f.Grant.Subject, g, ns(f.CreatedAt), ns(f.LastUsed), ns(f.IdleExpiry), ns(f.AbsoluteExpiry), it.Family.CurrentHash)
		if err != nil {
			return s.unavailable("import family", err)
		}
	case it.Tombstone != nil:
		if !now.Before(it.Tombstone.Until) {
			return nil
		}
		if _, err := s.w.ExecContext(ctx, `INSERT INTO refresh_families (id, expires) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING`,
			it.Tombstone.FamilyID, ns(it.Tombstone.Until)); err != nil {
			return s.unavailable("import tombstone", err)
		}
	case it.Session != nil:
		se := it.Session.Session
		if !now.Before(se.Expiry) {
			return nil
		}
		data, err := encode(se)
		if err != nil {
			return err
		}
		if _, err := s.w.ExecContext(ctx, `INSERT INTO sessions (hash, subject, data, expiry, connector_id, upstream_sub, upstream_sid)
VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (hash) DO NOTHING`,
			it.Session.Hash, se.Subject, data, ns(se.Expiry), se.ConnectorID, se.Grant.UpstreamSubject, se.UpstreamSID); err != nil {
			return s.unavailable("import session", err)
		}
	case it.Seen != nil:
		if !now.Before(it.Seen.Until) {
			return nil
		}
		if _, err := s.w.ExecContext(ctx, `INSERT INTO seen (namespace, id, until) VALUES ($1, $2, $3) ON CONFLICT (namespace, id) DO NOTHING`,
			it.Seen.Namespace, it.Seen.ID, ns(it.Seen.Until)); err != nil {
			return s.unavailable("import seen", err)
		}
	case it.Delivery != nil:
		d := *it.Delivery
		data, err := encode(d)
		if err != nil {
			return err
		}
		if _, err := s.w.ExecContext(ctx, `INSERT INTO deliveries (id, due, attempts, data) VALUES ($1, $2, $3, $4)
ON CONFLICT (id) DO NOTHING`, d.ID, ns(d.Due), d.Attempts, data); err != nil {
			return s.unavailable("import delivery", err)
		}
	default:
		return fmt.Errorf("%s: import: empty item", s.d.name)
	}
	return nil
}
