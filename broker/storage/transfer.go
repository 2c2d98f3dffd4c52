package storage

import (
	"context"
	"errors"
	"time"
)

// Item is one record that `fedbroker storage copy` moves from one backend
// to another: exactly one field is set. Secrets stay hashed on the way (a
// backend never knows the clear refresh token or session id), so an Item
// carries the hash a backend stored, and Import stores it as is.
type Item struct {
	// Keys is the serialized key set (GetKeys).
	Keys []byte
	Link *Link
	// Family is a live refresh family with its LastUsed and IdleExpiry as
	// of its last rotation, and the hash of its current token.
	Family *FamilyItem
	// Session is a live SSO session (ID empty) under the hash of its id.
	Session *SessionItem
	// Seen is a MarkSeen record: a revoked access token or family, or a
	// one-time assertion id.
	Seen *SeenItem
	// Tombstone is a revoked family id, kept so the family is never
	// created again.
	Tombstone *TombstoneItem
	// Delivery is a back-channel logout not yet delivered, with its next
	// due time and its attempts so far.
	Delivery *Delivery
}

// FamilyItem is a refresh family in transit.
type FamilyItem struct {
	Family      RefreshFamily
	CurrentHash string
}

// SessionItem is a session in transit.
type SessionItem struct {
	Session Session
	Hash    string
}

// SeenItem is a MarkSeen record in transit.
type SeenItem struct {
	Namespace, ID string
	Until         time.Time
}

// TombstoneItem is a revoked family's tombstone in transit.
type TombstoneItem struct {
	FamilyID string
	Until    time.Time
}

// Exporter is implemented by backends whose state can be moved to another
// backend. Export calls fn once per live record, in no particular order,
// and stops at fn's first error. Pending sign-ins, codes, leases and the
// replicas' heartbeats are not exported: they live seconds to minutes. A family's refresh retry
// state is not either: a client retrying a refresh during the copy is
// treated as reuse.
type Exporter interface {
	Export(ctx context.Context, fn func(Item) error) error
}

// Importer is implemented by backends that can take records exported by
// another. Import stores one record as the source held it; a record that
// already exists is left alone (ErrAlreadyExists is not returned), so a
// copy can be run again after an interruption.
type Importer interface {
	Import(ctx context.Context, it Item) error
}

// ExportKeysAndLinks hands st's key set and identity links to fn: the part
// of Export every backend does through its Storage methods.
func ExportKeysAndLinks(ctx context.Context, st Storage, fn func(Item) error) error {
	if data, _, err := st.GetKeys(ctx); err == nil {
		if err := fn(Item{Keys: data}); err != nil {
			return err
		}
	} else if !errors.Is(err, ErrNotFound) {
		return err
	}
	links, err := st.ListLinks(ctx)
	if err != nil {
		return err
	}
	for i := range links {
		if err := fn(Item{Link: &links[i]}); err != nil {
			return err
		}
	}
	return nil
}
