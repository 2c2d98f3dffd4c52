package memory

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/fedbroker/fedbroker/broker/storage"
)

// Replica records are kept as JSON like the other records, so a listing
// holds fresh copies whose times went through the same encoding as in the
// other backends. There are as many as broker processes: PutReplica drops
// the expired ones itself, so the periodic sweep need not know them.

// replicaEntry is a replica's JSON with its end.
type replicaEntry struct {
	data  []byte
	until time.Time
}

// PutReplica stores r until until; see storage.ReplicaRegistry.
func (s *Store) PutReplica(ctx context.Context, r storage.Replica, until time.Time) error {
	if r.ID == "" {
		return fmt.Errorf("memory: put replica: empty id")
	}
	if len(r.Activity) > storage.MaxReplicaActivity {
		return fmt.Errorf("memory: put replica %s: activity of %d bytes exceeds %d", r.ID, len(r.Activity), storage.MaxReplicaActivity)
	}
	b, err := encode(r)
	if err != nil {
		return err
	}
	now, err := s.lock()
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	if s.replicas == nil {
		s.replicas = map[string]replicaEntry{}
	}
	for id, e := range s.replicas {
		if !live(now, e.until) {
			delete(s.replicas, id)
		}
	}
	if !live(now, until) {
		delete(s.replicas, r.ID)
		return nil
	}
	s.replicas[r.ID] = replicaEntry{data: b, until: until}
	return nil
}

// ListReplicas returns the live records ordered by ID; see
// storage.ReplicaRegistry.
func (s *Store) ListReplicas(ctx context.Context) ([]storage.Replica, error) {
	now, err := s.lock()
	if err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	out := make([]storage.Replica, 0, len(s.replicas))
	for _, e := range s.replicas {
		if !live(now, e.until) {
			continue
		}
		r, err := decode[storage.Replica](e.data)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b storage.Replica) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}
