// Package tokens is the broker's token authority: it mints the broker's
// access and ID tokens, decides which mapped claims a token may release,
// checks the broker's own tokens when they come back (userinfo,
// introspection, revocation, delegation, logout hints), and seals what a
// connector keeps between sign-ins. Nothing here touches HTTP.
package tokens

import (
	"strings"
	"time"

	"github.com/fedbroker/fedbroker/broker/keys"
	"github.com/fedbroker/fedbroker/broker/observe"
	"github.com/fedbroker/fedbroker/broker/storage"
)

// Authority mints and checks the tokens of one issuer.
type Authority struct {
	issuer string
	keys   *keys.Manager
	store  storage.Storage
	now    func() time.Time
	audit  observe.Audit
}

// Deps are an Authority's dependencies; Keys and Store are required.
type Deps struct {
	Issuer string
	Keys   *keys.Manager
	Store  storage.Storage
	Now    func() time.Time
	Audit  observe.Audit
}

// New returns the authority of deps.Issuer.
func New(deps Deps) *Authority {
	a := &Authority{issuer: strings.TrimSuffix(deps.Issuer, "/"), keys: deps.Keys, store: deps.Store, now: deps.Now, audit: deps.Audit}
	if a.now == nil {
		a.now = time.Now
	}
	return a
}

// Issuer is the issuer URL the authority signs as.
func (a *Authority) Issuer() string { return a.issuer }
