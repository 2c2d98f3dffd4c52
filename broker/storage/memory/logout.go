package memory

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/fedbroker/fedbroker/broker/storage"
)

// TouchSession adds clientID to the session's clients and sets LastUsed.
func (s *Store) TouchSession(ctx context.Context, id, clientID string, now time.Time) error {
	t, err := s.lock()
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	h := storage.Hash(id)
	r, ok := s.sessions[h]
	if !ok || !live(t, r.expiry) {
		return fmt.Errorf("memory: session: %w", storage.ErrNotFound)
	}
	se, err := decode[storage.Session](r.data)
	if err != nil {
		return err
	}
	if clientID != "" && !slices.Contains(se.Clients, clientID) {
		se.Clients = append(se.Clients, clientID)
	}
	se.LastUsed = now
	b, err := encode(se)
	if err != nil {
		return err
	}
	r.data = b
	s.sessions[h] = r
	return nil
}

// liveSessions returns the live sessions that keep says to, by their
// hash, oldest first; s.mu is held.
func (s *Store) liveSessions(now time.Time, keep func(r record, se storage.Session) bool) (map[string]storage.Session, []string, error) {
	found := map[string]storage.Session{}
	var order []string
	for h, r := range s.sessions {
		if !live(now, r.expiry) {
			continue
		}
		se, err := decode[storage.Session](r.data)
		if err != nil {
			return nil, nil, err
		}
		if keep(r, se) {
			found[h] = se
			order = append(order, h)
		}
	}
	sort.Slice(order, func(i, j int) bool {
		a, b := found[order[i]], found[order[j]]
		if !a.AuthTime.Equal(b.AuthTime) {
			return a.AuthTime.Before(b.AuthTime)
		}
		return order[i] < order[j]
	})
	return found, order, nil
}

func inOrder(found map[string]storage.Session, order []string) []storage.Session {
	out := make([]storage.Session, 0, len(order))
	for _, h := range order {
		out = append(out, found[h])
	}
	return out
}

// ListSessions returns the subject's live sessions, oldest first.
func (s *Store) ListSessions(ctx context.Context, subject string) ([]storage.Session, error) {
	now, err := s.lock()
	if err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	found, order, err := s.liveSessions(now, func(r record, _ storage.Session) bool { return r.subject == subject })
	if err != nil {
		return nil, err
	}
	return inOrder(found, order), nil
}

// UpstreamSessions returns the live sessions of an upstream account or
// upstream session of connectorID.
func (s *Store) UpstreamSessions(ctx context.Context, connectorID, upstreamSub, upstreamSID string) ([]storage.Session, error) {
	if upstreamSub == "" && upstreamSID == "" {
		return nil, nil
	}
	now, err := s.lock()
	if err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	found, order, err := s.liveSessions(now, func(_ record, se storage.Session) bool {
		return se.ConnectorID == connectorID &&
			(upstreamSub == "" || se.Grant.UpstreamSubject == upstreamSub) &&
			(upstreamSID == "" || se.UpstreamSID == upstreamSID)
	})
	if err != nil {
		return nil, err
	}
	return inOrder(found, order), nil
}

// EndSessions deletes the subject's session sid (all when sid is "") and
// revokes their refresh families.
func (s *Store) EndSessions(ctx context.Context, subject, sid string, until time.Time) ([]storage.Session, int, error) {
	now, err := s.lock()
	if err != nil {
		return nil, 0, err
	}
	defer s.mu.Unlock()
	found, order, err := s.liveSessions(now, func(r record, se storage.Session) bool {
		return r.subject == subject && (sid == "" || se.PublicID == sid)
	})
	if err != nil {
		return nil, 0, err
	}
	sids := map[string]bool{}
	for _, h := range order {
		delete(s.sessions, h)
		sids[found[h].PublicID] = true
	}
	families := 0
	for id, f := range s.families {
		if f.subject != subject {
			continue
		}
		if sid != "" {
			fam, err := f.family()
			if err != nil {
				return nil, 0, err
			}
			if !sids[fam.Grant.SessionID] {
				continue
			}
		}
		if f.alive(now) {
			families++
		}
		delete(s.families, id)
		if t, ok := s.tombstones[id]; !ok || until.After(t) {
			s.tombstones[id] = until
		}
	}
	return inOrder(found, order), families, nil
}

// PutDelivery stores d, replacing one with its ID.
func (s *Store) PutDelivery(ctx context.Context, d storage.Delivery) error {
	if _, err := s.lock(); err != nil {
		return err
	}
	defer s.mu.Unlock()
	s.deliveries[d.ID] = d
	return nil
}

// ClaimDeliveries takes up to limit due deliveries for lease.
func (s *Store) ClaimDeliveries(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]storage.Delivery, error) {
	if _, err := s.lock(); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	var due []storage.Delivery
	for _, d := range s.deliveries {
		if !d.Due.After(now) {
			due = append(due, d)
		}
	}
	sort.Slice(due, func(i, j int) bool {
		if !due[i].Due.Equal(due[j].Due) {
			return due[i].Due.Before(due[j].Due)
		}
		return due[i].ID < due[j].ID
	})
	if len(due) > limit {
		due = due[:max(limit, 0)]
	}
	for i := range due {
		due[i].Due = now.Add(lease)
		due[i].Attempts++
		s.deliveries[due[i].ID] = due[i]
	}
	return due, nil
}

// DeleteDelivery removes the delivery id.
func (s *Store) DeleteDelivery(ctx context.Context, id string) error {
	if _, err := s.lock(); err != nil {
		return err
	}
	defer s.mu.Unlock()
	delete(s.deliveries, id)
	return nil
}

// PendingDeliveries returns how many deliveries are stored.
func (s *Store) PendingDeliveries(ctx context.Context) (int, error) {
	if _, err := s.lock(); err != nil {
		return 0, err
	}
	defer s.mu.Unlock()
	return len(s.deliveries), nil
}
