package memory

import (
	"context"
	"fmt"

	"github.com/fedbroker/fedbroker/broker/storage"
)

var _ storage.KeyNotifier = (*Store)(nil)

// SubscribeKeys returns a channel that receives a value after every
// successful PutKeys on this Store (coalesced: its buffer holds one). It is
// closed when ctx is done or the Store is closed.
func (s *Store) SubscribeKeys(ctx context.Context) (<-chan struct{}, error) {
	ch, ok := s.keyNotes.Subscribe(ctx)
	if !ok {
		return nil, fmt.Errorf("memory: subscribe keys: store closed: %w", storage.ErrUnavailable)
	}
	return ch, nil
}
