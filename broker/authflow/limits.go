package authflow

import (
	"container/list"
	"crypto/sha256"
	"strings"
	"sync"
	"time"
)

// The password limiter decides, before a password is checked, whether it
// may be. It has two aims, and the first must never cost the second:
// guessing a password is slow, and a person who knows their password is
// not refused because someone else has been guessing it.
//
// Three token buckets, each filled to its burst and refilled at its rate;
// a check takes a token from each that applies, before the password is
// verified (so concurrent guesses cannot overrun a budget), and a right
// password gives them all back (signing in costs nothing):
//
//   - per address: 20, then one every 6 s, whatever the username. Stops
//     one address rotating usernames.
//   - per user and address: 5, then one a minute. Bounds the guesses at
//     one user from one address.
//   - per user: 10, then one a minute, over all addresses. When empty it
//     refuses only addresses that failed for this user in the last 15
//     minutes and did not sign in as this user in the last 30 days: an
//     address that has not been guessing, or that the person signed in
//     from, still gets its password checked (a wrong one then counts
//     against the two budgets above). Once a user's budget is spent, each
//     address that guessed gets another check only when its last failure
//     is 15 minutes old or when it wins the user's one token a minute.
//
// So guessing one user's password is bounded by the attacker's addresses
// times the per-user-and-address budget, and the owner's right password
// is refused only from an address that has itself failed for them in the
// last 15 minutes while their budget is spent (unless they signed in from
// it in the last 30 days), or whose own per-address or per-user-and-address
// budget is spent (someone sharing the address guessing).
//
// The user is the connector and the username lower-cased (the connector
// compares it case-insensitively; the caller trims spaces), so variants of
// a username share one budget. An address is an IPv4 address, or the /64
// of an IPv6 address (one host usually holds a whole /64).
//
// The limiter lives in each replica's memory: with N replicas the budgets
// are N times these. Its tables are capped, the least recently used entry
// going first, and swept of entries back at their initial state.
type loginLimiter struct {
	mu    sync.Mutex
	now   func() time.Time
	addrs *lruTable[*tokenBucket]
	pairs *lruTable[*pairEntry]
	users *lruTable[*userEntry]
	swept time.Time
}

// Budgets and windows of the password limiter.
const (
	addrBurst = 20 // attempts per address, then one per addrEvery
	addrEvery = 6 * time.Second
	pairBurst = 5 // attempts per user at one address, then one per pairEvery
	pairEvery = time.Minute
	userBurst = 10 // attempts per user, then one per userEvery (see above)
	userEvery = time.Minute

	// failWindow is how long an address that failed for a user counts as
	// guessing it.
	failWindow = 15 * time.Minute
	// goodFor is how long an address that signed in as a user is
	// remembered for that user, at most maxGoodAddrs per user.
	goodFor      = 30 * 24 * time.Hour
	maxGoodAddrs = 8

	// Table caps: some 30 MB at most (about 200 bytes an entry, 500 for
	// a user remembering maxGoodAddrs addresses).
	maxAddrs = 50_000
	maxPairs = 50_000
	maxUsers = 20_000

	sweepEvery = time.Minute
)

// Which limit refused an attempt, as the audit line's "limit".
const (
	limitAddress     = "address"
	limitUserAddress = "user_address"
	limitUser        = "user"
)

// A tokenBucket holds tokens, up to burst, refilled at one per every.
type tokenBucket struct {
	tokens float64
	at     time.Time
	burst  int
	every  time.Duration
}

func newTokenBucket(now time.Time, burst int, every time.Duration) *tokenBucket {
	return &tokenBucket{tokens: float64(burst), at: now, burst: burst, every: every}
}

func (b *tokenBucket) level(now time.Time) float64 {
	t := b.tokens
	if d := now.Sub(b.at); d > 0 {
		t += float64(d) / float64(b.every)
	}
	return min(t, float64(b.burst))
}

func (b *tokenBucket) full(now time.Time) bool { return b.level(now) >= float64(b.burst) }

func (b *tokenBucket) take(now time.Time) bool {
	t := b.level(now)
	if t < 1 {
		return false
	}
	b.tokens, b.at = t-1, now
	return true
}

func (b *tokenBucket) give(now time.Time) {
	b.tokens, b.at = min(b.level(now)+1, float64(b.burst)), now
}

// pairEntry is one user at one address.
type pairEntry struct {
	tokenBucket
	// failed is when the address last failed for the user (an attempt
	// counts as failed from the moment it is allowed until it succeeds).
	failed time.Time
}

func newPairEntry(now time.Time) *pairEntry {
	return &pairEntry{tokenBucket: *newTokenBucket(now, pairBurst, pairEvery)}
}

// userEntry is one user over all addresses.
type userEntry struct {
	tokenBucket
	good []goodAddr // addresses that signed in as this user, oldest first
}

func newUserEntry(now time.Time) *userEntry {
	return &userEntry{tokenBucket: *newTokenBucket(now, userBurst, userEvery)}
}

type goodAddr struct {
	addr limitKey
	at   time.Time
}

func (u *userEntry) isGood(addr limitKey, now time.Time) bool {
	for _, g := range u.good {
		if g.addr == addr && now.Sub(g.at) < goodFor {
			return true
		}
	}
	return false
}

func (u *userEntry) remember(addr limitKey, now time.Time) {
	u.forget(now)
	for i, g := range u.good {
		if g.addr == addr {
			u.good = append(u.good[:i], u.good[i+1:]...)
			break
		}
	}
	if len(u.good) >= maxGoodAddrs {
		u.good = u.good[1:]
	}
	u.good = append(u.good, goodAddr{addr, now})
}

// forget drops the addresses remembered too long ago.
func (u *userEntry) forget(now time.Time) {
	i := 0
	for i < len(u.good) && now.Sub(u.good[i].at) >= goodFor {
		i++
	}
	u.good = u.good[i:]
}

// limitKey names an address, a user or a user at an address: a hash, so
// that an entry's size does not depend on the username.
type limitKey [16]byte

func hashLimitKey(parts ...string) limitKey {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	var k limitKey
	copy(k[:], h.Sum(nil))
	return k
}

// addrKey is the limited unit of a client address (clientNet).
func addrKey(addr string) limitKey {
	return hashLimitKey("addr", clientNet(addr))
}

func userKey(connector, user string) limitKey {
	return hashLimitKey("user", connector, strings.ToLower(user))
}

func pairKey(user, addr limitKey) limitKey {
	return hashLimitKey("pair", string(user[:]), string(addr[:]))
}

func newLoginLimiter(now func() time.Time) *loginLimiter {
	return &loginLimiter{
		now:   now,
		addrs: newLRUTable[*tokenBucket](maxAddrs),
		pairs: newLRUTable[*pairEntry](maxPairs),
		users: newLRUTable[*userEntry](maxUsers),
	}
}

// loginAttempt is a password check the limiter allowed, holding the
// tokens it took: a wrong password keeps them, succeeded and cancel give
// them back.
type loginAttempt struct {
	l                *loginLimiter
	addr, user, pair limitKey
	tookUser         bool
	failedBefore     time.Time
}

// reserve takes the tokens for one password check of user at connector
// from addr. It returns the attempt, or the limit that refuses it.
func (l *loginLimiter) reserve(connector, user, addr string) (*loginAttempt, string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	l.sweep(now)
	a := &loginAttempt{l: l, addr: addrKey(addr), user: userKey(connector, user)}
	a.pair = pairKey(a.user, a.addr)

	ab := l.addrs.get(a.addr, func() *tokenBucket { return newTokenBucket(now, addrBurst, addrEvery) })
	if ab.level(now) < 1 {
		return nil, limitAddress
	}
	pe := l.pairs.get(a.pair, func() *pairEntry { return newPairEntry(now) })
	if pe.level(now) < 1 {
		return nil, limitUserAddress
	}
	ue := l.users.get(a.user, func() *userEntry { return newUserEntry(now) })
	a.tookUser = ue.take(now)
	if !a.tookUser && now.Sub(pe.failed) < failWindow && !ue.isGood(a.addr, now) {
		return nil, limitUser
	}
	ab.take(now)
	pe.take(now)
	// Counted as a failure until it succeeds, so that concurrent attempts
	// from a fresh address do not all pass the per-user limit.
	a.failedBefore, pe.failed = pe.failed, now
	return a, ""
}

// succeeded gives the attempt's tokens back and remembers the address
// as one the user signs in from; the address's failures for the user are
// forgiven.
func (a *loginAttempt) succeeded() {
	l := a.l
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	a.giveBack(now)
	*l.pairs.get(a.pair, func() *pairEntry { return newPairEntry(now) }) = *newPairEntry(now)
	l.users.get(a.user, func() *userEntry { return newUserEntry(now) }).remember(a.addr, now)
}

// cancel gives the tokens back when no password was checked (the
// connector failed).
func (a *loginAttempt) cancel() {
	l := a.l
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	a.giveBack(now)
	if pe, ok := l.pairs.peek(a.pair); ok {
		pe.give(now)
		pe.failed = a.failedBefore
	}
}

func (a *loginAttempt) giveBack(now time.Time) {
	l := a.l
	if ab, ok := l.addrs.peek(a.addr); ok {
		ab.give(now)
	}
	if a.tookUser {
		if ue, ok := l.users.peek(a.user); ok {
			ue.give(now)
		}
	}
}

// sweep drops, at most once a sweepEvery, the entries that are back at
// their initial state.
func (l *loginLimiter) sweep(now time.Time) {
	if now.Sub(l.swept) < sweepEvery {
		return
	}
	l.swept = now
	l.addrs.drop(func(b *tokenBucket) bool { return b.full(now) })
	l.pairs.drop(func(p *pairEntry) bool { return p.full(now) && now.Sub(p.failed) >= failWindow })
	l.users.drop(func(u *userEntry) bool {
		u.forget(now)
		return u.full(now) && len(u.good) == 0
	})
}

// lruTable is a map capped at max entries, evicting the least recently used.
type lruTable[V any] struct {
	max   int
	byKey map[limitKey]*list.Element
	order *list.List // of *lruEntry[V], most recently used first
}

type lruEntry[V any] struct {
	key   limitKey
	value V
}

func newLRUTable[V any](max int) *lruTable[V] {
	return &lruTable[V]{max: max, byKey: make(map[limitKey]*list.Element), order: list.New()}
}

func (t *lruTable[V]) len() int { return len(t.byKey) }

// get returns k's value, made by fresh when missing, and marks it used.
func (t *lruTable[V]) get(k limitKey, fresh func() V) V {
	if e, ok := t.byKey[k]; ok {
		t.order.MoveToFront(e)
		return e.Value.(*lruEntry[V]).value
	}
	for t.order.Len() >= t.max {
		oldest := t.order.Back()
		t.order.Remove(oldest)
		delete(t.byKey, oldest.Value.(*lruEntry[V]).key)
	}
	v := fresh()
	t.byKey[k] = t.order.PushFront(&lruEntry[V]{key: k, value: v})
	return v
}

// peek returns k's value without marking it used.
func (t *lruTable[V]) peek(k limitKey) (V, bool) {
	if e, ok := t.byKey[k]; ok {
		return e.Value.(*lruEntry[V]).value, true
	}
	var zero V
	return zero, false
}

// drop removes the entries idle reports true for.
func (t *lruTable[V]) drop(idle func(V) bool) {
	for e := t.order.Front(); e != nil; {
		next := e.Next()
		if te := e.Value.(*lruEntry[V]); idle(te.value) {
			t.order.Remove(e)
			delete(t.byKey, te.key)
		}
		e = next
	}
}
