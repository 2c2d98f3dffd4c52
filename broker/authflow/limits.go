package authflow

import (
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// loginLimiter limits failed password attempts per user and per client
// address. It lives in each replica's memory: with N replicas an attacker
// gets at most N times the budget.
type loginLimiter struct {
	mu    sync.Mutex
	now   func() time.Time
	users map[string]*rate.Limiter
	addrs map[string]*rate.Limiter
	swept time.Time
}

const (
	userFailures = 5  // burst of failures per user, then one per minute
	addrFailures = 20 // burst of failures per address, then one per 6 s
)

func newLoginLimiter(now func() time.Time) *loginLimiter {
	return &loginLimiter{now: now, users: make(map[string]*rate.Limiter), addrs: make(map[string]*rate.Limiter)}
}

func userKey(connector, user string) string { return connector + "\x00" + strings.ToLower(user) }

func (l *loginLimiter) get(m map[string]*rate.Limiter, key string, every time.Duration, burst int) *rate.Limiter {
	lim, ok := m[key]
	if !ok {
		lim = rate.NewLimiter(rate.Every(every), burst)
		m[key] = lim
	}
	return lim
}

// allow reports whether another attempt may be made (it consumes nothing
// and records nothing).
func (l *loginLimiter) allow(connector, user, addr string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	// Only failures create limiters: a successful sign-in leaves nothing behind.
	if u, ok := l.users[userKey(connector, user)]; ok && u.TokensAt(now) < 1 {
		return false
	}
	if a, ok := l.addrs[addr]; ok && a.TokensAt(now) < 1 {
		return false
	}
	return true
}

// fail records a failed attempt.
func (l *loginLimiter) fail(connector, user, addr string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	l.get(l.users, userKey(connector, user), time.Minute, userFailures).AllowN(now, 1)
	l.get(l.addrs, addr, 6*time.Second, addrFailures).AllowN(now, 1)
	l.sweep(now)
}

// succeed forgets the user's failures.
func (l *loginLimiter) succeed(connector, user string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.users, userKey(connector, user))
}

// sweep drops limiters that are full again, so memory stays bounded.
func (l *loginLimiter) sweep(now time.Time) {
	if now.Sub(l.swept) < time.Minute {
		return
	}
	l.swept = now
	for k, lim := range l.users {
		if lim.TokensAt(now) >= userFailures {
			delete(l.users, k)
		}
	}
	for k, lim := range l.addrs {
		if lim.TokensAt(now) >= addrFailures {
			delete(l.addrs, k)
		}
	}
}
