package redis

import (
	"testing"

	"github.com/fedbroker/fedbroker/broker/storage/redis/redistest"
	"github.com/fedbroker/fedbroker/broker/storage/storagetest"
)

// TestRedeemStepsRaceLogout: where a redemption starts its family in a
// step after the session check (a grant with RefreshUntil; every code on
// Redis Cluster), a logout that ends the session between the two (its
// marker, then EndSessions, which finds no family yet) leaves no live
// family: the redemption checks the session again once the family exists.
func TestRedeemStepsRaceLogout(t *testing.T) {
	s := open(t, redistest.Start(t), Options{KeyPrefix: "race"})
	defer s.Close()
	storagetest.RedeemRacesLogout(t, s, func(h func()) { redeemStepHook = h })
}
