package sqlstore

import (
	"context"
	"errors"
	"time"

	"github.com/fedbroker/fedbroker/broker/storage"
)

// PutReplica: TEMPORARY, replaced by the real implementation.
func (s *Store) PutReplica(ctx context.Context, r storage.Replica, until time.Time) error {
	return errors.New("sqlstore: replicas not implemented yet")
}

// ListReplicas: TEMPORARY, replaced by the real implementation.
func (s *Store) ListReplicas(ctx context.Context) ([]storage.Replica, error) {
	return nil, errors.New("sqlstore: replicas not implemented yet")
}
