package memory

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/fedbroker/fedbroker/broker/storage"
)

type replicaEntry struct {
	r     storage.Replica
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
	r.Activity = slices.Clone(r.Activity)
	s.replicas[r.ID] = replicaEntry{r: r, until: until}
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
		if live(now, e.until) {
			r := e.r
			r.Activity = slices.Clone(r.Activity)
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b storage.Replica) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}
