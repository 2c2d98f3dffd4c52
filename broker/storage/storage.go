// Package storage defines what the broker keeps beyond one request, and the
// conformance suite every backend must pass.
//
// Every secret-bearing value (authorization codes, refresh tokens, SSO
// session ids) is passed to a backend in clear and stored only under its
// SHA-256 (see Hash); a backend never writes the clear value anywhere.
// Expired records behave as absent. A backend failure is returned as an
// error wrapping ErrUnavailable, never as ErrNotFound.
package storage

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"slices"
	"time"
)

var (
	// ErrNotFound means the record does not exist or has expired.
	ErrNotFound = errors.New("storage: not found")
	// ErrAlreadyExists means a create collided with an existing record.
	ErrAlreadyExists = errors.New("storage: already exists")
	// ErrAlreadyUsed is returned by ConsumeCode for a code consumed before;
	// the returned AuthCode is still filled so the caller can revoke the
	// refresh family issued from it.
	ErrAlreadyUsed = errors.New("storage: already used")
	// ErrReused is returned by RotateRefresh when a token of a live family
	// other than its current one is presented (an already-rotated token,
	// or one the family never issued) and it is not a retry (ErrRetry);
	// the whole family has been revoked by then.
	ErrReused = errors.New("storage: refresh token reused")
	// ErrRetry is returned by RotateRefresh, with the family (unchanged)
	// and the sealed successor its last rotation kept, when the token
	// presented is the one that rotation replaced and the rotation is
	// within the retry window (see Retry): a client retrying a refresh
	// whose response was lost.
	ErrRetry = errors.New("storage: refresh retried")
	// ErrSeen is returned by RedeemCode and RefreshGrant when the Mark
	// they were to record is recorded already (a replayed DPoP proof):
	// nothing else was done.
	ErrSeen = errors.New("storage: already seen")
	// ErrUnchecked is returned by RefreshGrant, with the family as it is,
	// when the family's grant does not plainly meet the rotation's
	// expectations (see Rotation): nothing was rotated, and the caller
	// checks the family itself and rotates with RotateRefresh.
	ErrUnchecked = errors.New("storage: refresh needs the caller's checks")
	// ErrConflict is returned by PutKeys when the stored version moved on.
	ErrConflict = errors.New("storage: conflict")
	// ErrUnavailable wraps every backend failure (connection refused,
	// timeout, corrupt record).
	ErrUnavailable = errors.New("storage: unavailable")
)

// KeyNotifier is implemented by a Storage that can tell its clients at once
// that the key set changed, so replicas pick up a rotation within moments
// instead of at their next timed sync. It is optional: the key manager
// falls back to its timer without it, and also keeps the timer because a
// notification can be lost (a dropped connection, a restart).
type KeyNotifier interface {
	// SubscribeKeys returns a channel that receives a value soon after any
	// client of the same backend stored a key set with PutKeys (this one
	// included). Notifications are coalesced: one value may stand for
	// several writes, and the receiver re-reads with GetKeys. A value is
	// also sent when the subscription is re-established after a
	// connection was lost, since writes may have been missed meanwhile.
	// The channel is closed when ctx is done or the store is closed.
	SubscribeKeys(ctx context.Context) (<-chan struct{}, error)
}

// Hash returns the storage key of a secret: base64url(SHA-256(secret)).
func Hash(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// AuthRequest is a pending /authorize request, kept while the person signs in
// at the upstream. ID is random and travels as the upstream `state`.
type AuthRequest struct {
	ID                  string    `json:"id"`
	ClientID            string    `json:"client_id"`
	RedirectURI         string    `json:"redirect_uri"`
	Scopes              []string  `json:"scopes"`
	State               string    `json:"state,omitempty"`
	Nonce               string    `json:"nonce,omitempty"`
	CodeChallenge       string    `json:"code_challenge,omitempty"`
	CodeChallengeMethod string    `json:"code_challenge_method,omitempty"`
	Prompt              string    `json:"prompt,omitempty"`
	MaxAge              int       `json:"max_age,omitempty"` // seconds; -1 when absent
	LoginHint           string    `json:"login_hint,omitempty"`
	ConnectorID         string    `json:"connector_id,omitempty"`
	ConnectorState      []byte    `json:"connector_state,omitempty"`
	BrowserBinding      string    `json:"browser_binding,omitempty"` // hash of a per-browser cookie
	Expiry              time.Time `json:"expiry"`
	// DPoPJKT is the authorization request's dpop_jkt (RFC 9449 §10): the
	// thumbprint of the DPoP key its code is bound to.
	DPoPJKT string `json:"dpop_jkt,omitempty"`
	// Device is set on the records of the device authorization grant
	// (RFC 8628): see DeviceState.
	Device *DeviceState `json:"device,omitempty"`
	// Pushed is set on a pushed authorization request (RFC 9126), stored
	// under PushedRequestID until /authorize takes it: the authorization
	// parameters the client pushed, client authentication left out.
	Pushed map[string][]string `json:"pushed,omitempty"`
	// Logout is set on the record of a sign-out that went on to end the
	// upstream session too, stored under UpstreamLogoutID(state) until the
	// browser comes back from the upstream.
	Logout *LogoutState `json:"logout,omitempty"`
	// Test is set on the records of a test sign-in started from the
	// admin console's mapping workbench (testsignin.go): it never creates
	// a session, a code or a link.
	Test *TestSignIn `json:"test,omitempty"`
	// Console is set on the records of admin console sign-ins (see
	// ConsoleSession).
	Console *ConsoleSession `json:"console,omitempty"`
}

// LogoutState is where a sign-out goes once the upstream has ended its
// session too.
type LogoutState struct {
	// Target is the client's post_logout_redirect_uri with its state, ""
	// for the broker's signed-out page.
	Target string `json:"target,omitempty"`
	// FrontChannel are the front-channel logout URLs of the sessions that
	// ended, for the signed-out page's iframes.
	FrontChannel []string `json:"front_channel,omitempty"`
}

// UpstreamLogoutID is the id of the record of a sign-out waiting for the
// upstream, whose state is state (a secret, stored only hashed).
func UpstreamLogoutID(state string) string { return "logout:" + Hash(state) }

// DeviceState is what the device authorization grant (RFC 8628) keeps in
// AuthRequest records, which every backend stores as one JSON blob. Three
// kinds of record carry it: the device record, under
// DeviceRecordID(UserCode), made by the device authorization endpoint
// (CodeHash, Interval and CodeExpiry set); the result record, under
// DeviceResultID(UserCode), created once when the person approves (Grant
// set) or denies (Denied set), so that the first decision wins; and the
// pending sign-in a person starts from the verification page, with a
// random id, whose Device names only the UserCode it approves.
type DeviceState struct {
	// UserCode is the normalized user code (no dash, upper case).
	UserCode string `json:"user_code"`
	// CodeHash is Hash(device_code).
	CodeHash string `json:"code_hash,omitempty"`
	// Interval is the polling interval in seconds given to the device.
	Interval int64 `json:"interval,omitempty"`
	// CodeExpiry is when the device code expires; the record lives a
	// while longer so that a late poll learns expired_token.
	CodeExpiry time.Time `json:"code_expiry,omitzero"`
	// Grant is what the person approved; Denied that they refused.
	Grant  *Grant `json:"grant,omitempty"`
	Denied bool   `json:"denied,omitempty"`
}

// DeviceUserCodeAlphabet is the alphabet of device user codes: consonants
// only, without ones easily mistaken for each other or for digits.
const DeviceUserCodeAlphabet = "BCDFGHJKLMNPQRSTVWXZ"

// DisplayUserCode is a normalized device user code (eight characters) as
// a person reads it: XXXX-XXXX.
func DisplayUserCode(uc string) string { return uc[:4] + "-" + uc[4:] }

// DeviceRecordID is the id of the device record of user code userCode
// (normalized).
func DeviceRecordID(userCode string) string { return "device:" + userCode }

// DeviceResultID is the id of the record of the person's decision about
// user code userCode (normalized).
func DeviceResultID(userCode string) string { return "device-result:" + userCode }

// PushedRequestID is the id of the pushed authorization request whose
// request_uri ends in handle: the handle is a secret, stored only hashed.
func PushedRequestID(handle string) string { return "par:" + Hash(handle) }

// Grant is what a person consented to and what tokens are made from: the
// outcome of a sign-in after mapping. Codes and refresh families carry one.
type Grant struct {
	ClientID          string         `json:"client_id"`
	Subject           string         `json:"sub"`
	Scopes            []string       `json:"scopes"`
	Nonce             string         `json:"nonce,omitempty"`
	AuthTime          time.Time      `json:"auth_time"`
	SessionID         string         `json:"sid,omitempty"` // public session id (not the cookie secret)
	AMR               []string       `json:"amr,omitempty"`
	ConnectorID       string         `json:"connector_id"`
	UpstreamSubject   string         `json:"upstream_sub,omitempty"`
	ConnectorData     []byte         `json:"connector_data,omitempty"` // encrypted by the broker
	IDTokenClaims     map[string]any `json:"id_claims,omitempty"`
	AccessTokenClaims map[string]any `json:"at_claims,omitempty"`
	// NoRefresh and RefreshUntil are the connector's limits on refresh
	// tokens of this sign-in (connectors.Identity).
	NoRefresh    bool      `json:"no_refresh,omitempty"`
	RefreshUntil time.Time `json:"refresh_until,omitzero"`

	// FamilyRef names, in the access tokens minted from this grant, the
	// refresh family (or code) they descend from, so that revoking the
	// family revokes them too; see tokens.FamilyRef. The token endpoint
	// sets it just before minting; it is never stored.
	FamilyRef string `json:"-"`
	// DPoPJKT is the thumbprint of the key the grant's tokens are bound to
	// (RFC 9449 cnf.jkt). In a refresh family it binds the family's
	// refresh tokens to that key (public clients, RFC 9449 §5); on a
	// grant about to be minted it becomes the access token's cnf.jkt.
	DPoPJKT string `json:"dpop_jkt,omitempty"`
}

// AuthCode is a one-time authorization code.
type AuthCode struct {
	ClientID            string    `json:"client_id"`
	RedirectURI         string    `json:"redirect_uri"`
	CodeChallenge       string    `json:"code_challenge,omitempty"`
	CodeChallengeMethod string    `json:"code_challenge_method,omitempty"`
	FamilyID            string    `json:"family_id"` // refresh family this code will start
	Grant               Grant     `json:"grant"`
	Expiry              time.Time `json:"expiry"`
	// Created is when the code was issued; a code created before the
	// store's Since is not found. Zero (a code stored by an older version)
	// is never refused for that reason.
	Created time.Time `json:"created,omitzero"`
}

// RefreshFamily is a chain of rotated refresh tokens descending from one
// code. Only the newest token of a family is valid.
type RefreshFamily struct {
	ID             string    `json:"id"`
	Grant          Grant     `json:"grant"`
	CreatedAt      time.Time `json:"created_at"`
	LastUsed       time.Time `json:"last_used"`
	IdleExpiry     time.Time `json:"idle_expiry"`     // LastUsed + idle lifetime
	AbsoluteExpiry time.Time `json:"absolute_expiry"` // never extended
}

// Expiry is when the family ends unless it is used again: the earlier of
// its idle and absolute expiries.
func (f RefreshFamily) Expiry() time.Time {
	if f.AbsoluteExpiry.Before(f.IdleExpiry) {
		return f.AbsoluteExpiry
	}
	return f.IdleExpiry
}

// Retry is what RotateRefresh keeps of a rotation so that a client that
// lost its response can present the rotated token again and be given the
// same successor (see Storage.RotateRefresh).
type Retry struct {
	// Window is how long after a rotation the token it replaced is a
	// retry rather than reuse; 0 answers no retry and keeps nothing.
	Window time.Duration
	// SealedNext is the successor token encrypted by the broker; a backend
	// stores it as given and never sees the clear token. Empty keeps
	// nothing.
	SealedNext []byte
}

// Mark is one MarkSeen record: id in Namespace until Until.
type Mark struct {
	Namespace, ID string
	Until         time.Time
}

// Redemption is what RedeemCode does besides consuming a code.
type Redemption struct {
	// Now is the caller's clock: the family's times and the code's expiry
	// are measured on it.
	Now time.Time
	// Proof, when its ID is set, is recorded first, as MarkSeen would; if
	// it is recorded already, nothing else happens (ErrSeen).
	Proof Mark
	// EndedSessions is the MarkSeen namespace where an ended SSO
	// session's public id is recorded (tokens.RevokeSession): a code whose
	// Grant.SessionID is recorded there is consumed but starts no family,
	// and Redeemed.SessionEnded is set.
	EndedSessions string
	// FamilyID replaces the code's AuthCode.FamilyID when the code is
	// consumed, atomically: the family it starts has this id, and a later
	// replay of the code returns it (so that the replay revokes that
	// family and the access tokens naming it). It is new and random,
	// chosen by the caller, so that the caller can make the family's first
	// token before the call.
	FamilyID string
	// RefreshToken, when not empty, is the first token of the refresh
	// family to start, "<FamilyID>.<secret>". The family (ID FamilyID, the
	// code's grant with DPoPJKT as below, created and last used at Now,
	// AbsoluteExpiry Now+RefreshAbsolute capped at Grant.RefreshUntil,
	// IdleExpiry Now+RefreshIdle capped at AbsoluteExpiry) is started only
	// when the code's grant has the scope offline_access, NoRefresh unset,
	// and an absolute expiry after Now, and its session has not ended.
	RefreshToken                 string
	RefreshIdle, RefreshAbsolute time.Duration
	// DPoPJKT is the key the family's refresh tokens are bound to ("" for
	// none); it replaces the code's Grant.DPoPJKT in the family.
	DPoPJKT string
}

// Redeemed is what RedeemCode did.
type Redeemed struct {
	// Code is the code's record, its FamilyID the Redemption's.
	Code AuthCode
	// SessionEnded: the code's session had ended; no family was started.
	SessionEnded bool
	// Family is the family started, nil when none was.
	Family *RefreshFamily
}

// Rotation is one refresh for RefreshGrant: RotateRefresh's arguments,
// a proof to record first, and what the family's grant must plainly meet
// for the rotation to happen without the caller seeing the family first.
type Rotation struct {
	Old, Next string
	Now       time.Time
	Idle      time.Duration
	Retry     Retry
	// Proof, when its ID is set, is recorded first, as MarkSeen would; if
	// it is recorded already, nothing else happens (ErrSeen).
	Proof Mark
	// The expectations: the grant's ClientID is ClientID; its DPoPJKT is
	// empty or DPoPJKT; Scopes (when any) are all among its scopes; its
	// ConnectorID is among Connectors; it has no ConnectorData (the
	// upstream must be asked first). A current token whose family fails
	// one is not rotated: ErrUnchecked, with the family.
	ClientID   string
	DPoPJKT    string
	Scopes     []string
	Connectors []string
}

// Meets reports whether g plainly meets r's expectations (see Rotation).
func (r Rotation) Meets(g Grant) bool {
	if g.ClientID != r.ClientID || (g.DPoPJKT != "" && g.DPoPJKT != r.DPoPJKT) || len(g.ConnectorData) > 0 {
		return false
	}
	if !slices.Contains(r.Connectors, g.ConnectorID) {
		return false
	}
	for _, sc := range r.Scopes {
		if !slices.Contains(g.Scopes, sc) {
			return false
		}
	}
	return true
}

// StartsFamily reports whether a code with grant g starts a refresh family
// under r (see Redemption.RefreshToken), and with which absolute expiry.
func (r Redemption) StartsFamily(g Grant) (time.Time, bool) {
	absolute := r.Now.Add(r.RefreshAbsolute)
	if !g.RefreshUntil.IsZero() && g.RefreshUntil.Before(absolute) {
		absolute = g.RefreshUntil
	}
	ok := r.RefreshToken != "" && slices.Contains(g.Scopes, "offline_access") && !g.NoRefresh && absolute.After(r.Now)
	return absolute, ok
}

// NewFamily is the family r starts from a code with grant g, whose
// absolute expiry is absolute (see StartsFamily).
func (r Redemption) NewFamily(g Grant, absolute time.Time) RefreshFamily {
	g.DPoPJKT = r.DPoPJKT
	idle := r.Now.Add(r.RefreshIdle)
	if absolute.Before(idle) {
		idle = absolute
	}
	return RefreshFamily{ID: r.FamilyID, Grant: g, CreatedAt: r.Now, LastUsed: r.Now, IdleExpiry: idle, AbsoluteExpiry: absolute}
}

// GrantStore is implemented by a Storage that does each grant of the token
// endpoint in one step (on Redis one round trip, on SQL one transaction):
// a code's redemption with its family's start, a refresh's checks with its
// rotation. It is optional: without it the token endpoint composes the
// Storage methods, one call each.
type GrantStore interface {
	// RedeemCode records r.Proof (ErrSeen when seen), then consumes the
	// code as ConsumeCode does (ErrNotFound; ErrAlreadyUsed with the
	// record, whose FamilyID is the one its first redemption set), sets its
	// FamilyID to r.FamilyID, and starts the family r asks for unless the
	// code's session ended (see Redemption), atomically: a replay of the
	// code never comes between its consumption and its family's start. A
	// store may do it in more than one step where it says so (Redis
	// Cluster); it then keeps ConsumeCode's and CreateRefresh's guarantees.
	RedeemCode(ctx context.Context, code string, r Redemption) (Redeemed, error)
	// RefreshGrant records r.Proof (ErrSeen when seen), then, for a current
	// token whose family meets r's expectations, rotates it as RotateRefresh
	// does, atomically; for a current token whose family does not, it
	// changes nothing and returns the family with ErrUnchecked. Any other
	// token is answered as RotateRefresh answers it (ErrRetry, ErrReused,
	// ErrNotFound).
	RefreshGrant(ctx context.Context, r Rotation) (RefreshFamily, []byte, error)
}

// Session is a browser SSO session. ID is the cookie secret (stored hashed);
// PublicID is the `sid` claim.
type Session struct {
	ID          string         `json:"-"`
	PublicID    string         `json:"public_id"`
	Subject     string         `json:"sub"`
	ConnectorID string         `json:"connector_id"`
	Grant       Grant          `json:"grant"`
	AuthTime    time.Time      `json:"auth_time"`
	Expiry      time.Time      `json:"expiry"`
	Extra       map[string]any `json:"extra,omitempty"`
	// Created is when the session was stored; a session created before
	// the store's Since is not found. Zero (stored by an older version) is
	// never refused for that reason.
	Created time.Time `json:"created,omitzero"`
	// UpstreamSID is the upstream's own session id for this sign-in (an
	// OpenID provider's sid claim, a SAML SessionIndex), "" when it gave
	// none: an upstream's logout names it.
	UpstreamSID string `json:"upstream_sid,omitempty"`
	// Clients are the clients this session signed into (TouchSession),
	// which its end tells by back- and front-channel logout.
	Clients []string `json:"clients,omitempty"`
	// LastUsed is when the session last signed the person into a client.
	LastUsed time.Time `json:"last_used,omitzero"`
	// LogoutData is the connector's connectors.Identity.LogoutData,
	// encrypted by the broker: kept with the session only (not with its
	// refresh families) for ending the upstream session.
	LogoutData []byte `json:"logout_data,omitempty"`
}

// Link ties a link key (a verified email, an employee id) to one internal
// subject. The first identity to claim a key sets its subject.
type Link struct {
	Key             string    `json:"key"`
	Subject         string    `json:"sub"`
	ConnectorID     string    `json:"connector_id"`
	UpstreamSubject string    `json:"upstream_sub"`
	Created         time.Time `json:"created"`
}

// Storage is everything the broker persists. Every method that must be atomic
// says so; both backends implement that atomically.
type Storage interface {
	// CreateAuthRequest stores r until r.Expiry.
	CreateAuthRequest(ctx context.Context, r AuthRequest) error
	GetAuthRequest(ctx context.Context, id string) (AuthRequest, error)
	// UpdateAuthRequest replaces the stored request (same ID, same expiry);
	// ErrNotFound when it expired or was deleted.
	UpdateAuthRequest(ctx context.Context, r AuthRequest) error
	// TakeAuthRequest atomically returns and deletes the request: the second
	// caller gets ErrNotFound.
	TakeAuthRequest(ctx context.Context, id string) (AuthRequest, error)

	// CreateCode stores c under Hash(code) until c.Expiry.
	CreateCode(ctx context.Context, code string, c AuthCode) error
	// ConsumeCode atomically marks the code used and returns it. Exactly one
	// caller ever gets a nil error; later callers get ErrAlreadyUsed with the
	// record; an unknown or expired code is ErrNotFound.
	ConsumeCode(ctx context.Context, code string) (AuthCode, error)

	// CreateRefresh starts family f with its first token. It fails with
	// ErrNotFound if the family was revoked before it was created (a code
	// replayed before its first redemption finished).
	CreateRefresh(ctx context.Context, f RefreshFamily, token string) error
	// RotateRefresh atomically replaces the family's current token `old`
	// with `next`, sets LastUsed=now and IdleExpiry=now+idle (capped at the
	// absolute expiry), and returns the updated family. Presenting any
	// other token of a live family (one already rotated, or one it never
	// issued: the family id is known only to holders of its tokens)
	// revokes the family and returns ErrReused; a family keeps only its
	// current token and a generation, never the tokens it rotated.
	// Unknown family, expired, revoked or malformed: ErrNotFound.
	//
	// With retry.Window > 0 and retry.SealedNext set, the family also keeps,
	// until its next rotation, the hash of `old`, the rotation time (now)
	// and retry.SealedNext: one of each, so its size stays constant.
	// Presenting that `old` again while the family's current token is still
	// `next`, with now before the rotation time plus the window of that
	// later call, changes nothing and returns the family, the sealed
	// successor and ErrRetry, as often as it is presented; after the
	// window, or once `next` was rotated in turn, it is reuse. A zero
	// window keeps nothing and answers no retry.
	RotateRefresh(ctx context.Context, old, next string, now time.Time, idle time.Duration, retry Retry) (RefreshFamily, []byte, error)
	// UpdateRefreshGrant replaces the grant of the family whose current
	// token is token (after a rotation: the new token), atomically with
	// respect to rotation; ErrNotFound when token is not current. The
	// broker uses it to keep an upstream's rotated refresh token.
	UpdateRefreshGrant(ctx context.Context, token string, g Grant) error
	// GetRefresh returns the family of a current token without changing it.
	GetRefresh(ctx context.Context, token string) (RefreshFamily, error)
	// RevokeFamily deletes the family and leaves a tombstone until
	// `until`, so a later CreateRefresh with that id fails.
	RevokeFamily(ctx context.Context, familyID string, until time.Time) error
	// RevokeSubject revokes every refresh family and deletes every session
	// of a subject; it returns how many of each it removed.
	RevokeSubject(ctx context.Context, subject string) (families, sessions int, err error)

	// CreateSession stores s under Hash(s.ID) until s.Expiry.
	CreateSession(ctx context.Context, s Session) error
	GetSession(ctx context.Context, id string) (Session, error)
	DeleteSession(ctx context.Context, id string) error

	// GetKeys returns the serialized key set and its version (0 and
	// ErrNotFound when none is stored yet).
	GetKeys(ctx context.Context) (data []byte, version int64, err error)
	// PutKeys stores data if the stored version still equals expect
	// (0 for "none yet"), atomically, and returns the new version;
	// otherwise ErrConflict.
	PutKeys(ctx context.Context, data []byte, expect int64) (int64, error)
	// AcquireLease takes or renews the named lease for holder for ttl;
	// false when another holder has it. A ttl <= 0 releases the lease if
	// holder has it.
	AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error)

	// MarkSeen records id in namespace until `until` and reports whether it
	// was new (true) or seen before (false), atomically. With an until that
	// is not after now it records nothing and only reports whether id is
	// currently recorded (false) or not (true).
	MarkSeen(ctx context.Context, namespace, id string, until time.Time) (bool, error)

	// CreateLink stores l unless l.Key exists; it returns the stored link
	// and whether it was created, atomically (two first logins of one
	// person through two connectors end with one subject).
	CreateLink(ctx context.Context, l Link) (Link, bool, error)
	GetLink(ctx context.Context, key string) (Link, error)
	ListLinks(ctx context.Context) ([]Link, error)
	DeleteLink(ctx context.Context, key string) error

	// Since returns the start of the store's current epoch (see Epoch): the
	// moment before which what the store remembers may be incomplete
	// because it lost or rolled back state. RotateRefresh, GetRefresh
	// (and so UpdateRefreshGrant), ConsumeCode and GetSession treat a
	// family, code or session created before it as not found; callers refuse access
	// tokens issued before it where they check revocation. It does no I/O
	// and is zero until the store first reached its backend.
	Since() time.Time
	// Heartbeat advances the store's epoch, detecting a loss or rollback
	// between security writes; the broker calls it every EpochInterval.
	// A store that cannot lose state alone (memory) does nothing.
	Heartbeat(ctx context.Context) error

	SessionStore
	Outbox
	ReplicaRegistry

	// Ping reports whether the backend answers.
	Ping(ctx context.Context) error
	Close() error
}
