package tokens

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"time"

	"github.com/fedbroker/fedbroker/broker/config"
)

// FamilyClaim is the private access token claim that names the refresh
// family (started by one authorization code) a token descends from: its
// value is FamilyRef of the family id. Tokens from client credentials and
// workload exchanges have none; a delegated token keeps its subject
// token's. A mapped claim of this name is never released.
const FamilyClaim = "fb_fam"

// revokedFamilyNamespace holds the FamilyRef of revoked families, until
// the last access token such a family could have issued expires.
const revokedFamilyNamespace = "revoked_family"

// FamilyRef returns the reference to refresh family familyID that access
// tokens carry: 128 bits of a domain-separated SHA-256 of the id,
// base64url. The family id itself is the first half of every refresh token
// of the family and a storage key, so it never travels in an access token.
// An empty id has no reference ("").
func FamilyRef(familyID string) string {
	if familyID == "" {
		return ""
	}
	sum := sha256.Sum256([]byte("fedbroker refresh family\x00" + familyID))
	return base64.RawURLEncoding.EncodeToString(sum[:16])
}

// RevokeFamily revokes refresh family familyID and every access token
// issued from it (its code's, its rotations', and those delegated from
// them): CheckAccessToken refuses them from then on. expiry is the
// family's absolute expiry, or an upper bound of it when unknown; the
// revocation is remembered until then plus the longest access token
// lifetime. It is the one place a family is revoked: a replayed code, a
// reused refresh token, /revoke of a refresh token, an upstream that
// refuses to refresh. Revoking a family twice is harmless.
func (a *Authority) RevokeFamily(ctx context.Context, familyID string, expiry time.Time) error {
	if familyID == "" {
		return nil
	}
	// Mark the access tokens first: should storage fail between the two
	// steps, the family is still there and the caller's retry (a replayed
	// code or /revoke again) finds it.
	if _, err := a.store.MarkSeen(ctx, revokedFamilyNamespace, FamilyRef(familyID), expiry.Add(config.MaxTokenLifetime+time.Minute)); err != nil {
		return err
	}
	return a.store.RevokeFamily(ctx, familyID, expiry)
}

// familyRevoked reports whether the family ref names was revoked.
func (a *Authority) familyRevoked(ctx context.Context, ref string) (bool, error) {
	// A past `until` only asks.
	notRevoked, err := a.store.MarkSeen(ctx, revokedFamilyNamespace, ref, time.Time{})
	return !notRevoked, err
}
