package sqlstore

import (
	"testing"

	"github.com/fedbroker/fedbroker/broker/storage/storagetest"
)

// TestRedeemCodeRacesLogout: a logout that ends a session while a code of
// that session is being redeemed, after the redemption found the session
// not ended and before it committed, leaves no live family. Without the
// session lock on PostgreSQL, EndSessions does not see the uncommitted
// family and the redemption commits it after the logout.
func TestRedeemCodeRacesLogout(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		storagetest.RedeemRacesLogout(t, b.fresh(t, Options{}), func(h func()) { redeemCheckedHook = h })
	})
}
