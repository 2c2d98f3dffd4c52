package oidc

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"

	"github.com/fedbroker/fedbroker/connectors"
	"github.com/fedbroker/fedbroker/problem"
)

// Values of Config.OfflineAccessMissing: what the broker may do with a
// sign-in that asked the upstream for a refresh token and got none (a
// strict provider that wants prompt=consent, a client registration without
// offline access). Without an upstream refresh token the broker cannot ask
// the upstream again on refresh, so a person disabled upstream would keep
// refreshing; each policy bounds that.
const (
	// OfflineMissingCap (the default) lets the broker refresh, with the
	// claims of the sign-in, until the upstream session ends: the upstream
	// ID token's exp, or auth_time (else the sign-in) plus
	// UpstreamSessionLifetime when that is set.
	OfflineMissingCap = "cap_session"
	// OfflineMissingRefuse refuses every broker refresh of such a sign-in.
	OfflineMissingRefuse = "refuse_refresh"
)

const (
	// missingRefreshLog is the WARN message of a sign-in without the
	// upstream refresh token that was asked for.
	missingRefreshLog = "oidc: upstream issued no refresh token"
	// missingRefreshLogInterval is the least time between two such WARN
	// lines of one connector; the next line counts the sign-ins between.
	missingRefreshLogInterval = 15 * time.Minute
	// missingRefreshWarnFor is how long after the last such sign-in
	// Warnings still reports it.
	missingRefreshWarnFor = 24 * time.Hour

	minSessionLifetime = time.Minute
	maxSessionLifetime = 90 * 24 * time.Hour
)

// Connector reports its warnings through a Warnings method, which the
// broker may discover with a type assertion (as it does HealthChecker).
var _ interface{ Warnings() []string } = (*Connector)(nil)

// validateOffline checks offline_access_missing and upstream_session_lifetime.
func (c *Config) validateOffline() []problem.Problem {
	var errs problem.List
	off := c.OfflineAccess != nil && !*c.OfflineAccess
	switch c.OfflineAccessMissing {
	case "", OfflineMissingCap, OfflineMissingRefuse:
		if off && c.OfflineAccessMissing != "" {
			errs.Add("offline_access_missing", "has no effect with offline_access: false (no upstream refresh token is asked for)")
		}
	default:
		errs.Add("offline_access_missing", "must be %s or %s, not %q", OfflineMissingCap, OfflineMissingRefuse, c.OfflineAccessMissing)
	}
	if d := c.UpstreamSessionLifetime; d != 0 {
		switch {
		case off:
			errs.Add("upstream_session_lifetime", "has no effect with offline_access: false")
		case c.OfflineAccessMissing == OfflineMissingRefuse:
			errs.Add("upstream_session_lifetime", "applies only with offline_access_missing: %s", OfflineMissingCap)
		case d < minSessionLifetime || d > maxSessionLifetime:
			errs.Add("upstream_session_lifetime", "must be between %s and %s", minSessionLifetime, maxSessionLifetime)
		}
	}
	return errs
}

// connectorData is Identity.ConnectorData: the upstream refresh token, or,
// when the upstream issued none, what the policy allows the broker's
// refresh: nothing (NoRefresh) or refreshes until Until with the claims
// and sources of the sign-in. The JSON is read leniently: data written
// before a field existed (or after one was dropped) still decodes.
type connectorData struct {
	RefreshToken string         `json:"refresh_token,omitempty"`
	NoRefresh    bool           `json:"no_refresh,omitempty"`
	Until        int64          `json:"until,omitempty"` // Unix seconds
	Claims       map[string]any `json:"claims,omitempty"`
	Sources      map[string]any `json:"sources,omitempty"`
}

// refreshLimit is what a sign-in's connector data allows the broker.
type refreshLimit struct {
	Refuse bool      // no refresh at all
	Until  time.Time // refresh until then (zero: no limit)
}

// refreshLimitOf reads the limit of id's connector data.
func refreshLimitOf(id connectors.Identity) refreshLimit {
	var d connectorData
	if len(id.ConnectorData) == 0 || json.Unmarshal(id.ConnectorData, &d) != nil || d.RefreshToken != "" {
		return refreshLimit{}
	}
	lim := refreshLimit{Refuse: d.NoRefresh}
	if d.Until != 0 {
		lim.Until = time.Unix(d.Until, 0)
	}
	return lim
}

// OfflineStatus is what a connector saw of upstream refresh tokens since
// it was opened (on this replica).
type OfflineStatus struct {
	Requested      bool      `json:"requested"`       // offline_access is on: a refresh token is expected
	ScopeRequested bool      `json:"scope_requested"` // the offline_access scope is sent (it is not when the upstream does not list it)
	Policy         string    `json:"policy"`          // offline_access_missing
	Kept           int64     `json:"kept"`            // sign-ins that brought a refresh token
	Missing        int64     `json:"missing"`         // sign-ins that brought none
	LastMissing    time.Time `json:"last_missing,omitzero"`
}

// offlineTracker counts sign-ins with and without a refresh token and
// rate-limits the WARN line.
type offlineTracker struct {
	mu          sync.Mutex
	kept        int64
	missing     int64
	lastMissing time.Time
	lastLogged  time.Time
	sinceLog    int64
}

// keepRefresh sets id's connector data after a sign-in: the upstream
// refresh token, or, when offline access was wanted and none came, the
// policy's limit (and the sign-in is counted, and logged at most once per
// missingRefreshLogInterval).
func (c *Connector) keepRefresh(id *connectors.Identity, tok *oauth2.Token, claims map[string]any) error {
	if !c.wantRefresh {
		return nil
	}
	var d connectorData
	if tok.RefreshToken != "" {
		c.track.mu.Lock()
		c.track.kept++
		c.track.mu.Unlock()
		d.RefreshToken = tok.RefreshToken
	} else {
		c.noteMissing()
		d = c.limitData(*id, claims)
	}
	b, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("oidc: encode connector data: %w", err)
	}
	id.ConnectorData = b
	// Tell the broker too, so that it issues no refresh token it would
	// refuse, and none that outlives the upstream session.
	lim := refreshLimitOf(*id)
	id.NoRefresh, id.RefreshUntil = lim.Refuse, lim.Until
	return nil
}

// limitData is the connector data of a sign-in without a refresh token
// under the configured policy.
func (c *Connector) limitData(id connectors.Identity, claims map[string]any) connectorData {
	if c.cfg.OfflineAccessMissing == OfflineMissingRefuse {
		return connectorData{NoRefresh: true}
	}
	var until time.Time
	if d := c.cfg.UpstreamSessionLifetime; d > 0 {
		start := c.now()
		if at, ok := unixClaim(claims, "auth_time"); ok && at.Before(start) {
			start = at
		}
		until = start.Add(d)
	} else if exp, ok := unixClaim(claims, "exp"); ok {
		until = exp
	}
	if until.IsZero() {
		return connectorData{NoRefresh: true}
	}
	return connectorData{Until: until.Unix(), Claims: id.Claims, Sources: id.Sources}
}

// refreshWithoutToken answers a broker refresh of a sign-in that brought
// no upstream refresh token, as its connector data says.
func (c *Connector) refreshWithoutToken(id connectors.Identity, d connectorData) (connectors.Identity, error) {
	switch {
	case d.NoRefresh:
		return connectors.Identity{}, userError(CodeRefreshDenied, "This sign-in cannot be refreshed. Please sign in again.",
			fmt.Errorf("oidc: %s: the upstream issued no refresh token at sign-in and offline_access_missing is %s", c.id, OfflineMissingRefuse))
	case d.Until != 0:
		until := time.Unix(d.Until, 0)
		if !c.now().Before(until) {
			return connectors.Identity{}, userError(CodeRefreshDenied, "Your session at the identity provider has ended. Please sign in again.",
				fmt.Errorf("oidc: %s: upstream session without refresh token ended at %s", c.id, until.UTC().Format(time.RFC3339)))
		}
		return connectors.Identity{Subject: id.Subject, Claims: d.Claims, Sources: d.Sources, ConnectorData: id.ConnectorData, SessionID: id.SessionID}, nil
	}
	return id, nil
}

// noteMissing counts a sign-in without a refresh token and logs it at WARN
// unless one was logged less than missingRefreshLogInterval ago.
func (c *Connector) noteMissing() {
	now := c.now()
	t := &c.track
	t.mu.Lock()
	t.missing++
	t.sinceLog++
	t.lastMissing = now
	var n int64
	if t.lastLogged.IsZero() || now.Sub(t.lastLogged) >= missingRefreshLogInterval {
		n, t.sinceLog, t.lastLogged = t.sinceLog, 0, now
	}
	t.mu.Unlock()
	if n > 0 {
		c.logger.Warn(missingRefreshLog, "connector", c.id, "policy", c.cfg.OfflineAccessMissing,
			"sign_ins", n, "interval", missingRefreshLogInterval.String(), "hint", c.missingHint())
	}
}

// missingHint says what to look at upstream.
func (c *Connector) missingHint() string {
	if c.scopeNotListed {
		return "the upstream does not list the offline_access scope, so it is not requested"
	}
	if c.askOffline && !strings.Contains(c.params.Get("prompt"), "consent") {
		return fmt.Sprintf("offline_access is sent with prompt=%q: a provider following OpenID Connect Core §11 wants prompt=consent", c.params.Get("prompt"))
	}
	return "check that the upstream client registration may receive refresh tokens (offline access)"
}

// OfflineAccessStatus reports the sign-ins this connector saw with and
// without an upstream refresh token.
func (c *Connector) OfflineAccessStatus() OfflineStatus {
	c.track.mu.Lock()
	defer c.track.mu.Unlock()
	return OfflineStatus{
		Requested: c.wantRefresh, ScopeRequested: c.askOffline, Policy: c.cfg.OfflineAccessMissing,
		Kept: c.track.kept, Missing: c.track.missing, LastMissing: c.track.lastMissing,
	}
}

// Warnings returns what an operator should know about this connector
// beyond whether its upstream answers: offline_access on but not listed
// by the upstream, and sign-ins without the refresh token that was asked
// for (while the last one is less than a day old). Empty when all is well.
func (c *Connector) Warnings() []string {
	var w []string
	if c.endSessionWarning != "" {
		w = append(w, c.endSessionWarning)
	}
	if c.scopeNotListed {
		w = append(w, "offline_access is on, but the upstream's discovery document does not list the offline_access scope: it is not requested")
	}
	st := c.OfflineAccessStatus()
	if st.Missing > 0 && c.now().Sub(st.LastMissing) < missingRefreshWarnFor {
		what := "broker refreshes end with the upstream session"
		if st.Policy == OfflineMissingRefuse {
			what = "the broker refuses to refresh them"
		}
		w = append(w, fmt.Sprintf("the upstream issued no refresh token for %d sign-ins (%d with one) since the connector was loaded, the last at %s; offline_access_missing is %s: %s (%s)",
			st.Missing, st.Kept, st.LastMissing.UTC().Format(time.RFC3339), st.Policy, what, c.missingHint()))
	}
	return w
}

// unixClaim reads a NumericDate claim.
func unixClaim(claims map[string]any, name string) (time.Time, bool) {
	switch v := claims[name].(type) {
	case float64:
		return time.Unix(int64(v), 0), v > 0
	case json.Number:
		n, err := v.Int64()
		return time.Unix(n, 0), err == nil && n > 0
	}
	return time.Time{}, false
}
