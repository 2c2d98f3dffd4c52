package memory

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/fedbroker/fedbroker/broker/storage"
)

// CreateAuthRequest stores r until r.Expiry; ErrAlreadyExists if r.ID is
// taken.
func (s *Store) CreateAuthRequest(ctx context.Context, r storage.AuthRequest) error {
	b, err := encode(r)
	if err != nil {
		return err
	}
	now, err := s.lock()
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	if old, ok := s.authReqs[r.ID]; ok && live(now, old.expiry) {
		return fmt.Errorf("memory: auth request: %w", storage.ErrAlreadyExists)
	}
	s.removeAuthReq(r.ID) // an expired request of that id, if any
	s.addAuthReq(&areqEntry{record: record{data: b, expiry: r.Expiry}, id: r.ID})
	return nil
}

// GetAuthRequest returns the request with that id.
func (s *Store) GetAuthRequest(ctx context.Context, id string) (storage.AuthRequest, error) {
	now, err := s.lock()
	if err != nil {
		return storage.AuthRequest{}, err
	}
	defer s.mu.Unlock()
	r, ok := s.authReqs[id]
	if !ok || !live(now, r.expiry) {
		return storage.AuthRequest{}, fmt.Errorf("memory: auth request: %w", storage.ErrNotFound)
	}
	return decode[storage.AuthRequest](r.data)
}

// UpdateAuthRequest replaces a live request, keeping its stored expiry.
func (s *Store) UpdateAuthRequest(ctx context.Context, r storage.AuthRequest) error {
	b, err := encode(r)
	if err != nil {
		return err
	}
	now, err := s.lock()
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	old, ok := s.authReqs[r.ID]
	if !ok || !live(now, old.expiry) {
		return fmt.Errorf("memory: auth request: %w", storage.ErrNotFound)
	}
	old.data = b // same id, same expiry: its place in areqByExp holds
	return nil
}

// TakeAuthRequest returns and deletes the request atomically.
func (s *Store) TakeAuthRequest(ctx context.Context, id string) (storage.AuthRequest, error) {
	now, err := s.lock()
	if err != nil {
		return storage.AuthRequest{}, err
	}
	defer s.mu.Unlock()
	r, ok := s.authReqs[id]
	s.removeAuthReq(id)
	if !ok || !live(now, r.expiry) {
		return storage.AuthRequest{}, fmt.Errorf("memory: auth request: %w", storage.ErrNotFound)
	}
	return decode[storage.AuthRequest](r.data)
}

// CreateCode stores c under storage.Hash(code) until c.Expiry.
func (s *Store) CreateCode(ctx context.Context, code string, c storage.AuthCode) error {
	v, err := cloneCode(c)
	if err != nil {
		return err
	}
	now, err := s.lock()
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	h := storage.Hash(code)
	if old, ok := s.codes[h]; ok && live(now, old.expiry) {
		return fmt.Errorf("memory: code: %w", storage.ErrAlreadyExists)
	}
	s.codes[h] = &codeEntry{record: record{expiry: c.Expiry}, val: v}
	return nil
}

// ConsumeCode marks the code used and returns it; see storage.Storage.
func (s *Store) ConsumeCode(ctx context.Context, code string) (storage.AuthCode, error) {
	now, err := s.lock()
	if err != nil {
		return storage.AuthCode{}, err
	}
	defer s.mu.Unlock()
	c, ok := s.codes[storage.Hash(code)]
	if !ok || !live(now, c.expiry) {
		return storage.AuthCode{}, fmt.Errorf("memory: code: %w", storage.ErrNotFound)
	}
	rec, err := c.code()
	if err != nil {
		return rec, err
	}
	if c.used {
		return rec, fmt.Errorf("memory: code: %w", storage.ErrAlreadyUsed)
	}
	c.used = true
	return rec, nil
}

// CreateSession stores s under storage.Hash(se.ID) until se.Expiry.
func (s *Store) CreateSession(ctx context.Context, se storage.Session) error {
	b, err := encode(se) // Session.ID is not part of the JSON form.
	if err != nil {
		return err
	}
	now, err := s.lock()
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	h := storage.Hash(se.ID)
	if old, ok := s.sessions[h]; ok && live(now, old.expiry) {
		return fmt.Errorf("memory: session: %w", storage.ErrAlreadyExists)
	}
	s.sessions[h] = record{data: b, expiry: se.Expiry, subject: se.Subject}
	return nil
}

// GetSession returns the session whose cookie secret is id, with ID set.
func (s *Store) GetSession(ctx context.Context, id string) (storage.Session, error) {
	now, err := s.lock()
	if err != nil {
		return storage.Session{}, err
	}
	defer s.mu.Unlock()
	r, ok := s.sessions[storage.Hash(id)]
	if !ok || !live(now, r.expiry) {
		return storage.Session{}, fmt.Errorf("memory: session: %w", storage.ErrNotFound)
	}
	se, err := decode[storage.Session](r.data)
	se.ID = id
	return se, err
}

// DeleteSession deletes the session; ErrNotFound if there is none.
func (s *Store) DeleteSession(ctx context.Context, id string) error {
	now, err := s.lock()
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	h := storage.Hash(id)
	r, ok := s.sessions[h]
	delete(s.sessions, h)
	if !ok || !live(now, r.expiry) {
		return fmt.Errorf("memory: session: %w", storage.ErrNotFound)
	}
	return nil
}

// GetKeys returns the key set and its version.
func (s *Store) GetKeys(ctx context.Context) ([]byte, int64, error) {
	if _, err := s.lock(); err != nil {
		return nil, 0, err
	}
	defer s.mu.Unlock()
	if s.keysVer == 0 {
		return nil, 0, fmt.Errorf("memory: keys: %w", storage.ErrNotFound)
	}
	return append([]byte(nil), s.keys...), s.keysVer, nil
}

// PutKeys stores data if the version is still expect.
func (s *Store) PutKeys(ctx context.Context, data []byte, expect int64) (int64, error) {
	if _, err := s.lock(); err != nil {
		return 0, err
	}
	if s.keysVer != expect {
		defer s.mu.Unlock()
		return 0, fmt.Errorf("memory: keys version %d, expected %d: %w", s.keysVer, expect, storage.ErrConflict)
	}
	s.keys = append([]byte(nil), data...)
	s.keysVer++
	v := s.keysVer
	s.mu.Unlock()
	s.keyNotes.Notify()
	return v, nil
}

// AcquireLease takes or renews the named lease for holder.
func (s *Store) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	now, err := s.lock()
	if err != nil {
		return false, err
	}
	defer s.mu.Unlock()
	if l, ok := s.leases[name]; ok && live(now, l.expiry) && l.holder != holder {
		return false, nil
	}
	s.leases[name] = lease{holder: holder, expiry: now.Add(ttl)}
	return true, nil
}

// MarkSeen records id in namespace until `until`; true when it was new.
func (s *Store) MarkSeen(ctx context.Context, namespace, id string, until time.Time) (bool, error) {
	now, err := s.lock()
	if err != nil {
		return false, err
	}
	defer s.mu.Unlock()
	k := seenKey{namespace, id}
	if old, ok := s.seen[k]; ok && live(now, old) {
		return false, nil
	}
	s.seen[k] = until
	return true, nil
}

// CreateLink stores l unless l.Key exists, and returns the stored link.
func (s *Store) CreateLink(ctx context.Context, l storage.Link) (storage.Link, bool, error) {
	b, err := encode(l)
	if err != nil {
		return storage.Link{}, false, err
	}
	if _, err := s.lock(); err != nil {
		return storage.Link{}, false, err
	}
	defer s.mu.Unlock()
	created := false
	if _, ok := s.links[l.Key]; !ok {
		s.links[l.Key] = b
		created = true
	}
	got, err := decode[storage.Link](s.links[l.Key])
	return got, created, err
}

// GetLink returns the link of key.
func (s *Store) GetLink(ctx context.Context, key string) (storage.Link, error) {
	if _, err := s.lock(); err != nil {
		return storage.Link{}, err
	}
	defer s.mu.Unlock()
	b, ok := s.links[key]
	if !ok {
		return storage.Link{}, fmt.Errorf("memory: link: %w", storage.ErrNotFound)
	}
	return decode[storage.Link](b)
}

// ListLinks returns every link, sorted by key.
func (s *Store) ListLinks(ctx context.Context) ([]storage.Link, error) {
	if _, err := s.lock(); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	out := make([]storage.Link, 0, len(s.links))
	for _, b := range s.links {
		l, err := decode[storage.Link](b)
		if err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// DeleteLink deletes the link of key; ErrNotFound if there is none.
func (s *Store) DeleteLink(ctx context.Context, key string) error {
	if _, err := s.lock(); err != nil {
		return err
	}
	defer s.mu.Unlock()
	if _, ok := s.links[key]; !ok {
		return fmt.Errorf("memory: link: %w", storage.ErrNotFound)
	}
	delete(s.links, key)
	return nil
}
