package verify

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ReplayStore remembers the one-time identifiers a Verifier has accepted
// (the jti of DPoP proofs and of Logout Tokens) where every replica of a
// service sees them, so that a proof or Logout Token accepted by one
// replica is refused by the others. verify/redisreplay implements it on
// Redis. Without one (WithReplayStore), a Verifier remembers them in
// memory, and replicas do not share what they remember.
type ReplayStore interface {
	// Claim records key until until, unless it is recorded already, and
	// reports whether this call recorded it: false means the identifier
	// was used before. It is atomic across every replica. An error means
	// the store cannot tell, and the proof or token is refused.
	Claim(ctx context.Context, key string, until time.Time) (fresh bool, err error)
}

// ErrReplayUnavailable means the Verifier's ReplayStore could not say
// whether a DPoP proof or Logout Token was used before, so it was refused.
// The middleware answers 503, and BackchannelLogoutHandler 503, so that
// the broker sends the logout again.
var ErrReplayUnavailable = errors.New("verify: the replay store is unavailable")

// WithReplayStore makes the Verifier record accepted DPoP proofs and
// Logout Tokens in s instead of in memory (WithDPoPReplayCache then does
// not apply). Keys name the issuer, so services of several issuers may
// share a store.
func WithReplayStore(s ReplayStore) Option {
	return func(cfg *config) {
		if s == nil {
			cfg.errs = append(cfg.errs, errors.New("verify: WithReplayStore: nil store"))
			return
		}
		cfg.replayStore = s
	}
}

// seen records an accepted identifier of kind ("dpop" or "logout+jwt")
// for left from now, on the wall clock, and reports whether it was
// recorded before.
func (v *Verifier) seen(ctx context.Context, kind, id string, left time.Duration) (bool, error) {
	until := time.Now().Add(left)
	if v.replayStore == nil {
		return v.replay.Seen(kind+" "+id, until), nil
	}
	fresh, err := v.replayStore.Claim(ctx, kind+" "+v.issuer+" "+id, until)
	if err != nil {
		return false, fmt.Errorf("%w: %w", ErrReplayUnavailable, err)
	}
	return !fresh, nil
}
