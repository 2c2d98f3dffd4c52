package keys

import (
	"context"
	"testing"
)

// TestVerifyAnyAlgorithmOfTheSharedSet: while signing.algorithms differs
// between replicas (one is being added), a replica verifies (for
// introspection, userinfo, token exchange) tokens another replica signed
// with an algorithm of the shared set that it does not sign with itself.
func TestVerifyAnyAlgorithmOfTheSharedSet(t *testing.T) {
	clk := newClock()
	store := newStore(clk)
	wider := newManager(t, store, clk, Options{Algorithm: "ES256", Algorithms: []string{"EdDSA"}})
	narrow := newManager(t, store, clk, Options{Algorithm: "ES256"})
	if err := narrow.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	tok, err := wider.Sign("EdDSA", claims(t, clk.Now()), "JWT")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := narrow.Verify(tok); err != nil {
		t.Errorf("a replica without EdDSA configured rejects an EdDSA token of the shared set: %v", err)
	}
	if _, _, err := narrow.Verify(tok, "ES256"); err == nil {
		t.Errorf("Verify restricted to ES256 accepted an EdDSA token")
	}
}
