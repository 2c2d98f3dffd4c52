package authflow

import (
	"net/http"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/oauth"
)

// Pending sign-ins per client address: each address (an IPv6 address by
// its /64) may store a burst of auth requests, then one more every
// interval (config.HTTP.SignIns: by default 60, then one every 10 s; with
// the auth request lifetime of 10 minutes that is at most about 120
// pending requests per address, each a few KiB at most, see the bounds in
// authorize.go). The budget lives in each replica's memory: with N
// replicas an address gets at most N times as much.
const (
	// pendingSweep is how often buckets that are full again are dropped.
	pendingSweep = time.Minute
)

// unknownAddr is the address HandleAuthorize gives a request whose
// address echo cannot tell: such requests share one budget.
const unknownAddr = "unknown"

// errTooManyPending answers an address that used up its budget. No sign-in
// request was stored, so the way back is the application; the budget gives
// one back every few seconds (10 s by default).
var errTooManyPending = &oauth.PageError{Status: http.StatusTooManyRequests, Heading: "Too many sign-in requests", Message: "Too many sign-ins were started from your network in a short time. Wait a few seconds, then go back to the application and sign in again.", Code: "too_many_requests"}

// pendingLimiter limits the auth requests one client address may store.
// Its memory follows the addresses seen in the last burst × interval (10
// minutes by default) plus one sweep interval: a bucket that is full
// again is dropped.
type pendingLimiter struct {
	mu    sync.Mutex
	now   func() time.Time
	burst int
	every time.Duration
	addrs map[string]*rate.Limiter
	swept time.Time
}

func newPendingLimiter(now func() time.Time, limit config.RateLimit) *pendingLimiter {
	if limit.Burst < 1 || limit.Every <= 0 {
		limit = config.DefaultSignInLimit
	}
	return &pendingLimiter{now: now, burst: limit.Burst, every: limit.Every, addrs: make(map[string]*rate.Limiter)}
}

// clientNet is the unit a client address is limited by, for sign-ins
// started and for password attempts alike: an IPv4 address (also when
// written IPv4-mapped), the /64 of an IPv6 address (one subscriber's usual
// allocation), or, for what does not parse, its first 64 bytes.
func clientNet(addr string) string {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		if len(addr) > 64 {
			addr = addr[:64]
		}
		return addr
	}
	a = a.Unmap().WithZone("")
	if a.Is4() {
		return a.String()
	}
	p, err := a.Prefix(64)
	if err != nil {
		return a.String()
	}
	return p.String()
}

// take uses one pending sign-in of addr's budget; false when none is left.
func (l *pendingLimiter) take(addr string) bool {
	key := clientNet(addr)
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	l.sweep(now)
	lim, ok := l.addrs[key]
	if !ok {
		lim = rate.NewLimiter(rate.Every(l.every), l.burst)
		l.addrs[key] = lim
	}
	return lim.AllowN(now, 1)
}

// sweep drops buckets that are full again, so memory stays bounded.
func (l *pendingLimiter) sweep(now time.Time) {
	if now.Sub(l.swept) < pendingSweep {
		return
	}
	l.swept = now
	for k, lim := range l.addrs {
		if lim.TokensAt(now) >= float64(l.burst) {
			delete(l.addrs, k)
		}
	}
}

// size is the number of addresses tracked.
func (l *pendingLimiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.addrs)
}
