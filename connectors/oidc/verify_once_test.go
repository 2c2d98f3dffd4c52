package oidc

import (
	"net/http"
	"testing"
	"time"

	"github.com/fedbroker/fedbroker/connectors/jwks"
	"github.com/fedbroker/fedbroker/connectors/testidp"
)

// TestLoginVerifiesTheSignatureOnce: a sign-in checks the upstream ID
// token's signature once; go-oidc's verifier, which checks the claims,
// must not verify it a second time (the ECDSA verification is most of a
// sign-in's CPU). The key set here fetches the keys again before every
// verification, so the IdP's key fetches count the verifications.
func TestLoginVerifiesTheSignatureOnce(t *testing.T) {
	idp := newIdP(t, testidp.Options{})
	c := open(t, baseConfig(idp), nil)
	c.keys = jwks.NewRemote(idp.URL()+"/keys", jwks.Options{Client: &http.Client{}, MinRefresh: time.Nanosecond, MaxAge: time.Nanosecond, Algorithms: c.algs})
	before := idp.KeyFetches()
	const logins = 3
	for range logins {
		time.Sleep(time.Millisecond) // past MaxAge and MinRefresh on any clock
		if _, err := login(t, c); err != nil {
			t.Fatalf("login: %v", err)
		}
	}
	if got := idp.KeyFetches() - before; got != logins {
		t.Errorf("%d sign-ins made %d signature verifications, want %d", logins, got, logins)
	}
}
