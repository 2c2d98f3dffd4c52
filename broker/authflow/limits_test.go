package authflow

// The password limiter's tests drive the real flow (authorize, the password
// form, the local connector's bcrypt check, finish) with a fake clock. They
// are in package authflow so that the memory test can look at the
// limiter's tables.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"
	"golang.org/x/crypto/bcrypt"

	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/oauth"
	"github.com/fedbroker/fedbroker/broker/observe"
	"github.com/fedbroker/fedbroker/broker/runtime"
	"github.com/fedbroker/fedbroker/broker/runtime/runtimetest"
	"github.com/fedbroker/fedbroker/broker/tokens"
	"github.com/fedbroker/fedbroker/templates"
)

// limAuditBuffer collects audit lines written from several goroutines.
type limAuditBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *limAuditBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *limAuditBuffer) count(substr string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Count(b.buf.String(), substr)
}

type limitFixture struct {
	*runtimetest.Fixture
	flow  *Flow
	audit *limAuditBuffer
}

func newLimitFixture(t *testing.T) limitFixture {
	t.Helper()
	return newLimitFixtureWith(t, nil)
}

// newLimitFixtureWith builds the fixture with its configuration changed by
// mutate.
func newLimitFixtureWith(t *testing.T, mutate func(*config.Config)) limitFixture {
	t.Helper()
	f := runtimetest.New(t, "", mutate)
	tmpl, err := templates.New()
	if err != nil {
		t.Fatal(err)
	}
	a := tokens.New(tokens.Deps{Issuer: runtimetest.Issuer, Keys: f.Keys, Store: f.Store, Now: f.Clock.Now})
	sealer, _ := tokens.NewSealer(nil)
	audit := &limAuditBuffer{}
	flow := New(Deps{
		Issuer: runtimetest.Issuer, Store: f.Store, Tokens: a, Sealer: sealer, Now: f.Clock.Now,
		Audit:   observe.NewAudit(slog.New(slog.NewJSONHandler(audit, nil))),
		Metrics: observe.NewMetrics(prometheus.NewRegistry()), Health: observe.NewHealth(),
		Pages:   &oauth.Writer{Issuer: runtimetest.Issuer, Templates: tmpl},
		Runtime: func() *runtime.Runtime { return f.Runtime },
	})
	return limitFixture{f, flow, audit}
}

// limLoginForm is an auth request waiting at the local connector's password
// form, in one browser.
type limLoginForm struct {
	reqID, csrf string
	browser     Browser
}

// startLogin runs authorize and opens the password form.
func (f limitFixture) startLogin(t *testing.T) limLoginForm {
	t.Helper()
	ctx := context.Background()
	v := url.Values{
		"client_id": {"app"}, "redirect_uri": {"http://127.0.0.1:9999/cb"}, "response_type": {"code"},
		"scope": {"openid email"}, "state": {"st"}, "nonce": {"n"},
		"code_challenge": {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"}, "code_challenge_method": {"S256"},
	}
	res, err := f.flow.Authorize(ctx, f.Runtime, v, Browser{})
	if err != nil || res.BrowserID == "" {
		t.Fatalf("Authorize = %+v, %v", res, err)
	}
	b := Browser{BrowserID: res.BrowserID}
	u, err := url.Parse(res.Redirect)
	if err != nil {
		t.Fatal(err)
	}
	reqID := u.Query().Get("req")
	res, err = f.flow.StartLogin(ctx, f.Runtime, "local", reqID, b)
	if err != nil || res.Template != "password.html" {
		t.Fatalf("StartLogin = %+v, %v; want the password form", res, err)
	}
	return limLoginForm{reqID: reqID, csrf: res.Data.(templates.PasswordData).CSRF, browser: b}
}

// Outcomes of a password sign-in.
const (
	outSignedIn      = "signed in"        // the password was right: a code for the client
	outWrongPassword = "wrong password"   // checked and wrong: the form again, 401
	outThrottled     = "too many (429)"   // refused before the password was checked
	outOther         = "something else"   // anything else fails the test
	limAlice         = "alice"            // the fixture's local user
	limWrongPassword = "not the password" // never alice's password
)

// submit posts the password form of lf.
func (f limitFixture) submit(lf limLoginForm, user, password, ip string) (string, error) {
	res, err := f.flow.PasswordLogin(context.Background(), f.Runtime, "local", PasswordForm{
		RequestID: lf.reqID, CSRF: lf.csrf, Username: user, Password: password, RemoteIP: ip,
	}, lf.browser)
	var pe *oauth.PageError
	switch {
	case err == nil && res.Template == "password.html" && res.Status == http.StatusUnauthorized && res.Session == nil:
		return outWrongPassword, nil
	case err == nil && res.Session != nil && strings.Contains(res.Redirect, "code="):
		return outSignedIn, nil
	case errors.As(err, &pe) && pe.Status == http.StatusTooManyRequests && pe.Code == "too_many_attempts":
		return outThrottled, nil
	}
	return outOther, fmt.Errorf("PasswordLogin(%q from %s) = %+v, %v", user, ip, res, err)
}

// try runs a whole sign-in (authorize, form, password) for user from ip.
func (f limitFixture) try(t *testing.T, user, password, ip string) string {
	t.Helper()
	out, err := f.submit(f.startLogin(t), user, password, ip)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// expect runs try and fails the test unless the outcome is want.
func (f limitFixture) expect(t *testing.T, want, user, password, ip, why string) {
	t.Helper()
	if got := f.try(t, user, password, ip); got != want {
		t.Fatalf("%s: %q with %s from %s: %s, want %s", why, user, map[bool]string{true: "the right password", false: "a wrong password"}[password == runtimetest.AlicePassword], ip, got, want)
	}
}

// Finding 1: the limiter checked for a token before bcrypt and recorded
// the failure after it, so parallel guesses all got checked. At most the
// budget may reach the password check, however many run at once.
func TestParallelGuessesAreCappedByTheBudget(t *testing.T) {
	t.Run("one address", func(t *testing.T) {
		// A slower hash (as in production) widens the window between
		// the limit's check and the failure being recorded.
		f := newLimitFixtureWith(t, limSlowAlice(t))
		lf := f.startLogin(t)
		const n = 40
		counts := limParallelGuesses(t, f, lf, n, func(int) string { return "198.51.100.7" })
		if counts[outWrongPassword] != pairBurst || counts[outThrottled] != n-pairBurst {
			t.Fatalf("%d parallel wrong passwords for alice from one address: %v; want %d checked (the budget), the rest 429", n, counts, pairBurst)
		}
		if got := f.audit.count(`"login_failed"`); got != counts[outWrongPassword] {
			t.Errorf("%d login_failed audit lines for %d checked passwords", got, counts[outWrongPassword])
		}
		if got := f.audit.count(`"login_throttled"`); got != counts[outThrottled] {
			t.Errorf("%d login_throttled audit lines for %d refusals", got, counts[outThrottled])
		}
	})
	t.Run("many addresses", func(t *testing.T) {
		f := newLimitFixture(t)
		lf := f.startLogin(t)
		const addrs, perAddr = 8, 8
		counts := limParallelGuesses(t, f, lf, addrs*perAddr, func(i int) string { return fmt.Sprintf("198.51.100.%d", 10+i%addrs) })
		// Each address's first guess is always checked (it has not
		// failed yet); every other checked guess took one of the user's
		// tokens.
		if most := userBurst + addrs; counts[outWrongPassword] < addrs || counts[outWrongPassword] > most {
			t.Fatalf("%d parallel wrong passwords for alice from %d addresses: %v; want between %d and %d checked", addrs*perAddr, addrs, counts, addrs, most)
		}
	})
}

// limSlowAlice gives alice a bcrypt hash of cost 8 (the fixture's is the
// minimum, 4), so that each check takes a few milliseconds.
func limSlowAlice(t *testing.T) func(*config.Config) {
	hash, err := bcrypt.GenerateFromPassword([]byte(runtimetest.AlicePassword), 8)
	if err != nil {
		t.Fatal(err)
	}
	return func(cfg *config.Config) {
		var set func(n *yaml.Node) bool
		set = func(n *yaml.Node) bool {
			for i, c := range n.Content {
				if n.Kind == yaml.MappingNode && i%2 == 0 && c.Value == "password_hash" {
					n.Content[i+1].Value = string(hash)
					return true
				}
				if set(c) {
					return true
				}
			}
			return false
		}
		if len(cfg.Connectors) != 1 || !set(&cfg.Connectors[0].Config) {
			t.Fatal("no password_hash in the fixture's local connector")
		}
	}
}

// limParallelGuesses submits n wrong passwords for alice at once, guess i from
// addr(i), and counts the outcomes.
func limParallelGuesses(t *testing.T, f limitFixture, lf limLoginForm, n int, addr func(int) string) map[string]int {
	t.Helper()
	var (
		mu     sync.Mutex
		counts = map[string]int{}
		wg     sync.WaitGroup
		start  = make(chan struct{})
	)
	for i := range n {
		wg.Go(func() {
			<-start
			out, err := f.submit(lf, limAlice, limWrongPassword, addr(i))
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			counts[out]++
			mu.Unlock()
		})
	}
	close(start)
	wg.Wait()
	return counts
}

// Finding 2: wrong passwords from one address locked the owner out
// everywhere. The owner's right password from an address that has not
// been guessing is never refused, while guessing stays limited.
func TestGuessingDoesNotLockOutTheOwner(t *testing.T) {
	f := newLimitFixture(t)
	const (
		attacker  = "198.51.100.1"
		attacker2 = "198.51.100.2"
		attacker3 = "198.51.100.3"
		home      = "203.0.113.7"
		travel    = "203.0.113.99"
	)
	for i := range pairBurst {
		f.expect(t, outWrongPassword, limAlice, limWrongPassword, attacker, fmt.Sprintf("guess %d from the attacker", i+1))
	}
	f.expect(t, outThrottled, limAlice, limWrongPassword, attacker, "one guess more than the budget of a user at one address")
	f.expect(t, outSignedIn, limAlice, runtimetest.AlicePassword, home, "the owner from another address after the attack")

	// More addresses exhaust the user's budget: an address that failed
	// for alice is then stopped after its first guess.
	for i := range pairBurst {
		f.expect(t, outWrongPassword, limAlice, limWrongPassword, attacker2, fmt.Sprintf("guess %d from a second address", i+1))
	}
	f.expect(t, outWrongPassword, limAlice, limWrongPassword, attacker3, "a third address's first guess")
	f.expect(t, outThrottled, limAlice, limWrongPassword, attacker3, "a third address's second guess, the user's budget spent")
	if f.audit.count(`"limit":"user"`) != 1 {
		t.Errorf("want one login_throttled audit line with limit user; audit log:\n%s", f.audit.buf.String())
	}

	// The owner still signs in: from home (a recent success there, even
	// after a typo) and from a fresh address.
	f.expect(t, outSignedIn, limAlice, runtimetest.AlicePassword, home, "the owner at home, user budget spent")
	f.expect(t, outWrongPassword, limAlice, "typo", home, "the owner's typo at home")
	f.expect(t, outSignedIn, limAlice, runtimetest.AlicePassword, home, "the owner at home after a typo")
	f.expect(t, outSignedIn, limAlice, runtimetest.AlicePassword, travel, "the owner from a fresh address")

	// Half an hour of one guess a minute from each attacking address: the
	// owner is never refused, and the three addresses together get about
	// one guess a minute checked (the user's rate), not one each.
	const minutes = 30
	checked := 0
	for minute := range minutes {
		f.Clock.Advance(time.Minute)
		for _, ip := range []string{attacker, attacker2, attacker3} {
			if f.try(t, strings.ToUpper(limAlice), limWrongPassword, ip) == outWrongPassword {
				checked++
			}
		}
		for _, ip := range []string{home, fmt.Sprintf("192.0.2.%d", minute+1)} {
			f.expect(t, outSignedIn, limAlice, runtimetest.AlicePassword, ip, fmt.Sprintf("the owner during the attack, minute %d", minute+1))
		}
	}
	if checked < minutes || checked > minutes+userBurst {
		t.Errorf("%d guesses checked in %d minutes of one a minute from each of 3 addresses; want about one a minute in all", checked, minutes)
	}
}

// Successful sign-ins use no budget: the owner signing in many times in a
// row from one address is never refused.
func TestSuccessfulSignInsCostNothing(t *testing.T) {
	f := newLimitFixture(t)
	for i := range addrBurst + 5 {
		f.expect(t, outSignedIn, limAlice, runtimetest.AlicePassword, "203.0.113.7", fmt.Sprintf("sign-in %d", i+1))
	}
	for i := range pairBurst {
		f.expect(t, outWrongPassword, limAlice, limWrongPassword, "203.0.113.7", fmt.Sprintf("guess %d after those sign-ins", i+1))
	}
	f.expect(t, outThrottled, limAlice, limWrongPassword, "203.0.113.7", "one guess more than the budget")
}

// Case and surrounding spaces do not multiply the budget: every variant of
// a username counts against the same one.
func TestUsernameVariantsShareTheBudget(t *testing.T) {
	f := newLimitFixture(t)
	variants := []string{"alice", "ALICE", " Alice ", "aLiCe\t", "\nalicE"}
	for _, u := range variants[:pairBurst] {
		f.expect(t, outWrongPassword, u, limWrongPassword, "198.51.100.1", "a variant's first guess")
	}
	for _, u := range []string{"Alice", " ALICE", "alice"} {
		f.expect(t, outThrottled, u, limWrongPassword, "198.51.100.1", "a variant after the budget")
	}
}

// Rotating usernames from one address is stopped by the address's budget,
// and an IPv6 attacker cannot rotate addresses inside its /64.
func TestRotatingUsernamesIsStoppedPerAddress(t *testing.T) {
	for _, tc := range []struct {
		name string
		addr func(i int) string
	}{
		{"IPv4", func(int) string { return "198.51.100.1" }},
		{"IPv6 in one /64", func(i int) string { return fmt.Sprintf("2001:db8:1:2::%x", i+1) }},
		{"IPv4-mapped IPv6", func(int) string { return "::ffff:198.51.100.1" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newLimitFixture(t)
			lf := f.startLogin(t)
			n := 0
			guess := func(want, why string) {
				t.Helper()
				n++
				got, err := f.submit(lf, fmt.Sprintf("user%d", n), limWrongPassword, tc.addr(n))
				if err != nil || got != want {
					t.Fatalf("%s (guess %d): %s, %v; want %s", why, n, got, err, want)
				}
			}
			for range addrBurst {
				guess(outWrongPassword, "a new username within the address's budget")
			}
			guess(outThrottled, "a new username after the address's budget")
			if f.audit.count(`"limit":"address"`) != 1 {
				t.Errorf("want one login_throttled audit line with limit address")
			}
			f.Clock.Advance(addrEvery)
			guess(outWrongPassword, "a new username once the address earned a guess back")
			guess(outThrottled, "and the next")
			// Another address, and alice's right password elsewhere, are
			// not affected.
			f.expect(t, outWrongPassword, "someone", limWrongPassword, "192.0.2.50", "another address")
			f.expect(t, outSignedIn, limAlice, runtimetest.AlicePassword, "2001:db8:9::1", "alice elsewhere")
		})
	}
}

// The limiter's memory is bounded: its tables are capped (least recently
// used first out), idle entries are swept, and each user remembers a few
// addresses.
func TestLimiterMemoryStaysBounded(t *testing.T) {
	f := newLimitFixture(t)
	l := f.flow.limiter
	sizes := func() (int, int, int) { return l.addrs.len(), l.pairs.len(), l.users.len() }

	// Through the flow, with small caps: guesses at many usernames from
	// many addresses.
	const small = 40
	l.addrs.max, l.pairs.max, l.users.max = small, small, small
	lf := f.startLogin(t)
	for i := range 4 * small {
		if out, err := f.submit(lf, fmt.Sprintf("user%d", i), limWrongPassword, fmt.Sprintf("10.0.%d.%d", i/250, i%250)); err != nil || out != outWrongPassword {
			t.Fatalf("guess %d from a fresh address: %s, %v", i, out, err)
		}
		if a, p, u := sizes(); a > small || p > small || u > small {
			t.Fatalf("after %d guesses: %d addresses, %d user-addresses, %d users; want at most %d each", i+1, a, p, u, small)
		}
	}
	// The most recent guesses are the ones kept.
	if _, ok := l.pairs.peek(pairKey(userKey("local", fmt.Sprintf("user%d", 4*small-1)), addrKey("10.0.0.159"))); !ok {
		t.Error("the latest guess was evicted")
	}

	// Alice signs in from more addresses than a user remembers: the
	// latest are kept.
	for i := range maxGoodAddrs + 4 {
		f.expect(t, outSignedIn, limAlice, runtimetest.AlicePassword, fmt.Sprintf("192.0.2.%d", i+1), "alice from a new address")
	}
	ue, ok := l.users.peek(userKey("local", limAlice))
	if !ok || len(ue.good) != maxGoodAddrs || !ue.isGood(addrKey(fmt.Sprintf("192.0.2.%d", maxGoodAddrs+4)), f.Clock.Now()) || ue.isGood(addrKey("192.0.2.1"), f.Clock.Now()) {
		t.Fatalf("alice's remembered addresses: %+v, %v; want the latest %d", ue, ok, maxGoodAddrs)
	}

	// Idle entries are swept: after the failure window only alice (with
	// her addresses) and the one new attempt are left; after 30 days,
	// only that attempt's.
	f.Clock.Advance(failWindow)
	f.expect(t, outWrongPassword, "someone", limWrongPassword, "10.9.9.9", "a guess after the window")
	if a, p, u := sizes(); a != 1 || p != 1 || u != 2 {
		t.Errorf("after the failure window: %d addresses, %d user-addresses, %d users; want 1, 1, 2 (the new guess, alice)", a, p, u)
	}
	f.Clock.Advance(goodFor)
	f.expect(t, outWrongPassword, "someone", limWrongPassword, "10.9.9.8", "a guess 30 days later")
	if a, p, u := sizes(); a != 1 || p != 1 || u != 1 {
		t.Errorf("30 days later: %d addresses, %d user-addresses, %d users; want only the new guess's", a, p, u)
	}

	// With the real caps, many distinct attempts never grow the tables
	// past them (the limiter alone: a bcrypt per attempt would be slow).
	l = newLoginLimiter(f.Clock.Now)
	const n = max(maxAddrs, maxPairs, maxUsers) + 1000
	for i := range n {
		at, limit := l.reserve("local", fmt.Sprintf("user%d", i), fmt.Sprintf("10.%d.%d.%d", i>>16&0xff, i>>8&0xff, i&0xff))
		if at == nil {
			t.Fatalf("attempt %d refused by the %s limit", i, limit)
		}
	}
	if a, p, u := l.addrs.len(), l.pairs.len(), l.users.len(); a != maxAddrs || p != maxPairs || u != maxUsers || l.addrs.order.Len() != a {
		t.Errorf("after %d distinct attempts: %d addresses, %d user-addresses, %d users; want the caps %d, %d, %d", n, a, p, u, maxAddrs, maxPairs, maxUsers)
	}
}
