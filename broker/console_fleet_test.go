package broker

import (
	"net/http"
	"net/url"
	"testing"
)

// TestConsoleSessionAcrossReplicas: behind a load balancer a console
// browser's requests reach any replica. A sign-in on one replica is a
// sign-in on all of them (its CSRF token too), and a sign-out on one ends
// it on all.
func TestConsoleSessionAcrossReplicas(t *testing.T) {
	clk := newClock()
	store := newMemoryStore(clk)
	a := newConsole(t, newHarness(t, store, clk, nil), nil)
	b := newConsole(t, newHarness(t, store, clk, nil), nil)
	b.c.Jar = a.c.Jar // one browser: both consoles are on 127.0.0.1
	csrf := a.signIn()
	signedIn := a.c.Jar.Cookies(mustURL(a.base + "/console/"))
	if st, _ := b.get("/console/"); st != http.StatusOK {
		t.Fatalf("overview on the other replica = %d, want 200 (signed in there too)", st)
	}
	// The CSRF token issued by one replica is accepted by the other: sign
	// out there.
	st, hdr, _ := b.do(http.MethodPost, "/console/logout", url.Values{"csrf": {csrf}}, http.Header{"Origin": {b.base}})
	if st != http.StatusSeeOther || hdr.Get("Location") != "/console/login" {
		t.Fatalf("sign-out on the other replica = %d %s, want 303 to the login page", st, hdr.Get("Location"))
	}
	// Signed out everywhere, even with the cookie kept.
	a.c.Jar.SetCookies(mustURL(a.base+"/console/"), signedIn)
	if st, _ := a.get("/console/"); st != http.StatusSeeOther {
		t.Fatalf("overview after signing out on the other replica = %d, want 303 to the login page", st)
	}
}
