package grants

import (
	"context"
	"crypto/rand"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/oauth"
	"github.com/fedbroker/fedbroker/broker/runtime"
	"github.com/fedbroker/fedbroker/broker/storage"
	"github.com/fedbroker/fedbroker/broker/tokens"
)

// Error codes of the device authorization grant (RFC 8628 §3.5).
const (
	ErrAuthorizationPending = "authorization_pending"
	ErrSlowDown             = "slow_down"
	ErrExpiredToken         = "expired_token"
)

// Bounds of the device authorization grant.
const (
	// userCodeLen is the length of a user code: 20^8, about 2.6e10 codes.
	userCodeLen = 8
	// maxDeviceCodeLen bounds a device_code parameter.
	maxDeviceCodeLen = 128
	// slowDownStep is what each slow_down adds to the interval (RFC 8628
	// §3.5); maxSlowDowns caps how often it is added.
	slowDownStep = 5 * time.Second
	maxSlowDowns = 10
	// Namespaces of Storage.MarkSeen: the last poll of a device code, and
	// the slow_downs it earned.
	pollNamespace = "device-poll"
	slowNamespace = "device-slow"
)

// DeviceSettings are the server-wide settings of the device grant.
type DeviceSettings struct {
	// Lifetime of a device code; Interval the least time between polls.
	Lifetime, Interval time.Duration
	// VerificationURI is the page where the person enters the user code.
	VerificationURI string
}

// DeviceAuthorization is the device authorization response (RFC 8628
// §3.2).
type DeviceAuthorization struct {
	DeviceCode              string `json:"device_code"`
	UserCode                string `json:"user_code"`
	VerificationURI         string `json:"verification_uri"`
	VerificationURIComplete string `json:"verification_uri_complete"`
	ExpiresIn               int64  `json:"expires_in"`
	Interval                int64  `json:"interval"`
}

// newUserCode returns a user code of userCodeLen characters of
// storage.DeviceUserCodeAlphabet, uniformly chosen.
func newUserCode() string {
	const alphabet = storage.DeviceUserCodeAlphabet
	limit := byte(256 - 256%len(alphabet))
	out := make([]byte, 0, userCodeLen)
	var buf [16]byte
	for len(out) < userCodeLen {
		_, _ = rand.Read(buf[:]) // never fails on supported platforms
		for _, b := range buf {
			if b < limit && len(out) < userCodeLen {
				out = append(out, alphabet[int(b)%len(alphabet)])
			}
		}
	}
	return string(out)
}

// DeviceAuthorize starts a device authorization (RFC 8628 §3.1) for the
// authenticated client cl: it checks the grant and the scope as /authorize
// does and stores the device record, keyed by the user code, with the
// device code's hash. The device code is the user code, a dot and 32
// random bytes, so the token endpoint finds the record without an index.
func (g *Grants) DeviceAuthorize(ctx context.Context, rt *runtime.Runtime, cl *runtime.Client, rawScope string, s DeviceSettings) (*DeviceAuthorization, error) {
	if !cl.AllowsGrant(config.GrantDeviceCode) {
		return nil, oauth.UnauthorizedClient("the client may not use the device authorization grant")
	}
	if len(rawScope) > maxScopeLen {
		return nil, oauth.InvalidScope("scope is too long")
	}
	scopes := strings.Fields(rawScope)
	if len(scopes) > maxScopes {
		return nil, oauth.InvalidScope("scope has too many values")
	}
	for _, sc := range scopes {
		if !cl.AllowsScope(sc) {
			return nil, oauth.InvalidScope("scope %q is not allowed for this client", sc)
		}
	}
	scopes = oauth.Dedupe(scopes)
	now := g.now()
	for range 5 {
		uc := newUserCode()
		dc := uc + "." + oauth.RandomToken(32)
		rec := storage.AuthRequest{
			ID:       storage.DeviceRecordID(uc),
			ClientID: cl.ID,
			Scopes:   scopes,
			// Kept twice as long as the code is good, so that a late
			// poll learns expired_token rather than invalid_grant.
			Expiry: now.Add(2 * s.Lifetime),
			Device: &storage.DeviceState{UserCode: uc, CodeHash: storage.Hash(dc), Interval: int64(s.Interval / time.Second), CodeExpiry: now.Add(s.Lifetime)},
		}
		err := g.store.CreateAuthRequest(ctx, rec)
		if errors.Is(err, storage.ErrAlreadyExists) {
			continue // a live user code collided: draw another
		}
		if err != nil {
			return nil, err
		}
		g.audit.Event("device_authorization", "client_id", cl.ID)
		shown := storage.DisplayUserCode(uc)
		return &DeviceAuthorization{
			DeviceCode:              dc,
			UserCode:                shown,
			VerificationURI:         s.VerificationURI,
			VerificationURIComplete: s.VerificationURI + "?user_code=" + shown,
			ExpiresIn:               int64(s.Lifetime / time.Second),
			Interval:                rec.Device.Interval,
		}, nil
	}
	return nil, oauth.NewError(http.StatusServiceUnavailable, oauth.ErrTemporarilyUnavailable, "no free user code; try again")
}

// Bounds on the scope of a device authorization, as /authorize's.
const (
	maxScopeLen = 1024
	maxScopes   = 32
)

var errUnknownDeviceCode = oauth.InvalidGrant("the device code is invalid or was already used")

// DeviceCode answers a poll of the device authorization grant (RFC 8628
// §3.4–3.5): authorization_pending until the person decides, slow_down
// for a poll sooner than the interval (which grows by 5 s each time),
// access_denied after a refusal, expired_token once the code expired, and
// the token response once, after an approval. A device code belongs to
// the client it was issued to.
func (g *Grants) DeviceCode(ctx context.Context, rt *runtime.Runtime, cl *runtime.Client, req Request) (*tokens.Response, error) {
	dc := req.DeviceCode
	if dc == "" || len(dc) > maxDeviceCodeLen {
		return nil, oauth.InvalidRequest("device_code is required")
	}
	uc, _, ok := strings.Cut(dc, ".")
	if !ok || len(uc) != userCodeLen {
		return nil, errUnknownDeviceCode
	}
	recID := storage.DeviceRecordID(uc)
	rec, err := g.store.GetAuthRequest(ctx, recID)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return nil, errUnknownDeviceCode
	case err != nil:
		return nil, err
	}
	d := rec.Device
	if d == nil || d.CodeHash == "" || !oauth.ConstantTimeEqual(storage.Hash(dc), d.CodeHash) {
		return nil, errUnknownDeviceCode
	}
	if rec.ClientID != cl.ID {
		g.audit.Event("device_code_wrong_client", "client_id", cl.ID, "code_client_id", rec.ClientID)
		return nil, oauth.InvalidGrant("the device code was issued to another client")
	}
	now := g.now()
	if !d.CodeExpiry.After(now) {
		return nil, oauth.NewError(http.StatusBadRequest, ErrExpiredToken, "the device code has expired; start again")
	}
	if interval, slow, err := g.pace(ctx, rec, now); err != nil {
		return nil, err
	} else if slow {
		return nil, oauth.NewError(http.StatusBadRequest, ErrSlowDown, "polling too fast; poll at most every %d s", int64(interval/time.Second))
	}
	res, err := g.store.GetAuthRequest(ctx, storage.DeviceResultID(uc))
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return nil, oauth.NewError(http.StatusBadRequest, ErrAuthorizationPending, "the user has not yet approved the request")
	case err != nil:
		return nil, err
	}
	if res.Device == nil || !oauth.ConstantTimeEqual(res.Device.CodeHash, d.CodeHash) {
		// A decision about an earlier holder of this user code.
		return nil, oauth.NewError(http.StatusBadRequest, ErrAuthorizationPending, "the user has not yet approved the request")
	}
	if res.Device.Denied || res.Device.Grant == nil {
		return nil, oauth.NewError(http.StatusBadRequest, oauth.ErrAccessDenied, "the user denied the request")
	}
	// The device code is good once: the first poll to take the record
	// gets the tokens.
	if _, err := g.store.TakeAuthRequest(ctx, recID); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return nil, errUnknownDeviceCode
		}
		return nil, err
	}
	if _, err := g.store.TakeAuthRequest(ctx, res.ID); err != nil && !errors.Is(err, storage.ErrNotFound) {
		g.log.Warn("device: drop the result record", "client_id", cl.ID, "err", err)
	}
	return g.deviceTokens(ctx, rt, cl, *res.Device.Grant, req.BoundKey(), now)
}

// pace decides whether a poll of device record rec comes too soon. Each
// accepted poll is remembered (MarkSeen) for most of the interval, under
// the number of slow_downs earned so far; a poll while that mark lives is
// too fast and earns a slow_down: one more is remembered, the interval
// grows by slowDownStep, and this poll is remembered under the new count
// for the new interval, so that the larger interval holds from now on.
// Polls only read and mark, never rewrite the record, so they cannot race
// an approval, on any replica.
func (g *Grants) pace(ctx context.Context, rec storage.AuthRequest, now time.Time) (time.Duration, bool, error) {
	d := rec.Device
	slows := 0
	for slows < maxSlowDowns {
		fresh, err := g.store.MarkSeen(ctx, slowNamespace, d.CodeHash+"/"+strconv.Itoa(slows+1), now)
		if err != nil {
			return 0, false, err
		}
		if fresh {
			break
		}
		slows++
	}
	base := time.Duration(d.Interval) * time.Second
	interval := base + time.Duration(slows)*slowDownStep
	// A fifth of the interval is forgiven for network jitter.
	mark := func(n int, iv time.Duration) (bool, error) {
		return g.store.MarkSeen(ctx, pollNamespace, d.CodeHash+"/"+strconv.Itoa(n), now.Add(iv-iv/5))
	}
	first, err := mark(slows, interval)
	if err != nil || first {
		return interval, false, err
	}
	if slows < maxSlowDowns {
		if _, err := g.store.MarkSeen(ctx, slowNamespace, d.CodeHash+"/"+strconv.Itoa(slows+1), rec.Expiry); err != nil {
			return 0, false, err
		}
		interval += slowDownStep
		if _, err := mark(slows+1, interval); err != nil {
			return 0, false, err
		}
	}
	return interval, true, nil
}

// deviceTokens issues the token response of an approved device code:
// access token, ID token with openid, and a refresh token when the client
// may refresh and offline_access was granted, as the code grant does.
// With a DPoP proof of key jkt the access token is bound to it, and so is
// a public client's refresh family (RFC 9449 §5).
func (g *Grants) deviceTokens(ctx context.Context, rt *runtime.Runtime, cl *runtime.Client, grant storage.Grant, jkt string, now time.Time) (*tokens.Response, error) {
	if _, ok := rt.Connector(grant.ConnectorID); !ok {
		return nil, oauth.InvalidGrant("the sign-in method of this device code was removed")
	}
	famID := oauth.RandomToken(16)
	grant.FamilyRef = tokens.FamilyRef(famID)
	grant.DPoPJKT = jkt
	resp, err := g.tokens.Issue(cl, grant, now)
	if err != nil {
		return nil, err
	}
	grant.FamilyRef, grant.DPoPJKT = "", ""
	if cl.Public {
		grant.DPoPJKT = jkt
	}
	absolute := now.Add(rt.Tokens.RefreshAbsolute)
	if u := grant.RefreshUntil; !u.IsZero() {
		absolute = earliest(absolute, u)
	}
	if slices.Contains(grant.Scopes, "offline_access") && cl.AllowsGrant(config.GrantRefreshToken) && !grant.NoRefresh && absolute.After(now) {
		token := famID + "." + oauth.RandomToken(32)
		fam := storage.RefreshFamily{ID: famID, Grant: grant, CreatedAt: now, LastUsed: now, IdleExpiry: earliest(now.Add(rt.Tokens.RefreshIdle), absolute), AbsoluteExpiry: absolute}
		if err := g.store.CreateRefresh(ctx, fam, token); err != nil {
			return nil, err
		}
		resp.RefreshToken = token
	}
	g.audit.Event("token", "grant_type", config.GrantDeviceCode, "client_id", cl.ID, "sub", grant.Subject, "connector", grant.ConnectorID)
	return resp, nil
}
