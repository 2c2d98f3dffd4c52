package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/fedbroker/fedbroker/broker/storage"
)

// The replica registry is the table replicas (migration 0003): a record's
// JSON under its id, until its expiry. Writing a record is not a security
// write, so the epoch does not tick with it; the garbage collector deletes
// the rows that expired, and Export leaves the table out.

// PutReplica stores r under r.ID until `until`, replacing that ID's record;
// an until that has passed deletes it. See storage.ReplicaRegistry.
func (s *Store) PutReplica(ctx context.Context, r storage.Replica, until time.Time) error {
	if r.ID == "" {
		return fmt.Errorf("%s: put replica: empty id", s.d.name)
	}
	if len(r.Activity) > storage.MaxReplicaActivity {
		return fmt.Errorf("%s: put replica %s: activity of %d bytes exceeds %d", s.d.name, r.ID, len(r.Activity), storage.MaxReplicaActivity)
	}
	if !s.now().Before(until) {
		if _, err := s.w.ExecContext(ctx, `DELETE FROM replicas WHERE id = $1`, r.ID); err != nil {
			return s.unavailable("put replica", err)
		}
		return nil
	}
	data, err := encode(r)
	if err != nil {
		return err
	}
	if _, err := s.w.ExecContext(ctx, `INSERT INTO replicas (id, data, expiry) VALUES ($1, $2, $3)
ON CONFLICT (id) DO UPDATE SET data = excluded.data, expiry = excluded.expiry`, r.ID, data, ns(until)); err != nil {
		return s.unavailable("put replica", err)
	}
	return nil
}

// ListReplicas returns every record not yet expired, ordered by ID
// (bytewise); see storage.ReplicaRegistry.
func (s *Store) ListReplicas(ctx context.Context) ([]storage.Replica, error) {
	out := []storage.Replica{}
	err := s.each(ctx, "list replicas", `SELECT data FROM replicas WHERE expiry > $1 ORDER BY id`, []any{ns(s.now())},
		func(rows *sql.Rows) error {
			var data []byte
			if err := rows.Scan(&data); err != nil {
				return s.unavailable("list replicas", err)
			}
			var r storage.Replica
			if err := s.decode("replica", data, &r); err != nil {
				return err
			}
			out = append(out, r)
			return nil
		})
	if err != nil {
		return nil, err
	}
	return out, nil
}
