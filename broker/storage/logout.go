package storage

import (
	"context"
	"time"
)

// SessionStore is what single logout needs of the SSO sessions beyond
// create, get and delete: the sessions of a person, the sessions an
// upstream's logout names, and ending them together with their refresh
// families. Every backend implements it atomically where it says so.
type SessionStore interface {
	// TouchSession adds clientID to the Clients of the live session whose
	// cookie secret is id (once: a client already listed is not added
	// again) and sets its LastUsed to now, atomically with respect to the
	// other session methods. ErrNotFound when the session is gone.
	TouchSession(ctx context.Context, id, clientID string, now time.Time) error
	// ListSessions returns the live sessions of subject, oldest first,
	// each with ID empty (the cookie secret is stored only hashed).
	ListSessions(ctx context.Context, subject string) ([]Session, error)
	// UpstreamSessions returns the live sessions that connectorID created
	// for the upstream account upstreamSub (Session.Grant.UpstreamSubject)
	// or for the upstream session upstreamSID (Session.UpstreamSID): a
	// session matches when it is of that connector and every argument that
	// is not empty equals its own. Both empty match nothing. ID is empty.
	UpstreamSessions(ctx context.Context, connectorID, upstreamSub, upstreamSID string) ([]Session, error)
	// EndSessions deletes the live session of subject whose PublicID is sid
	// (every session of subject when sid is ""), and revokes, as
	// RevokeFamily does with a tombstone until `until`, the refresh
	// families of subject whose Grant.SessionID is the sid of a deleted
	// session (every family of subject when sid is ""). It returns the
	// sessions it deleted (ID empty) and how many families it revoked. A
	// session that is not there is not an error: it returns none.
	EndSessions(ctx context.Context, subject, sid string, until time.Time) ([]Session, int, error)
}

// Delivery is a message the broker must get to an application's server
// (a back-channel logout token), kept in storage until it is delivered or
// given up, so that any replica can send it and one that dies leaves it to
// the others.
type Delivery struct {
	// ID is random; PutDelivery replaces a delivery with the same ID. It
	// goes to the client's backchannel_logout_uri as configured when it is
	// sent (a reload may move it).
	ID string `json:"id"`
	// Kind says what to send: DeliveryBackchannelLogout.
	Kind     string `json:"kind"`
	ClientID string `json:"client_id"`
	// Subject and SID are the internal subject and the broker session id
	// the message is about.
	Subject string `json:"sub,omitempty"`
	SID     string `json:"sid,omitempty"`
	// Created is when it was first queued; the sender gives up after its
	// retry period.
	Created time.Time `json:"created"`
	// Due is when it may be sent next.
	Due time.Time `json:"due"`
	// Attempts counts the claims so far (ClaimDeliveries increments it).
	Attempts  int    `json:"attempts"`
	LastError string `json:"last_error,omitempty"`
}

// DeliveryBackchannelLogout is the Kind of an OpenID Connect Back-Channel
// Logout delivery.
const DeliveryBackchannelLogout = "backchannel_logout"

// Outbox keeps Deliveries.
type Outbox interface {
	// PutDelivery stores d, replacing the delivery with its ID if there is
	// one; it becomes claimable at d.Due.
	PutDelivery(ctx context.Context, d Delivery) error
	// ClaimDeliveries atomically takes up to limit deliveries whose Due is
	// not after now, earliest Due first, sets each one's Due to now+lease
	// and increments its Attempts, and returns them as updated. Until that
	// lease ends no other call returns them, so a claimer that dies leaves
	// them to the next; a claimer that sent one deletes it, one that failed
	// puts it back with a later Due.
	ClaimDeliveries(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]Delivery, error)
	// DeleteDelivery removes the delivery; deleting one that is not there
	// is not an error.
	DeleteDelivery(ctx context.Context, id string) error
	// PendingDeliveries returns how many deliveries are stored.
	PendingDeliveries(ctx context.Context) (int, error)
}
