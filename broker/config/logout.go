package config

import (
	"net/url"
	"strings"
	"time"
)

// Logout configures single logout: the `logout:` section.
type Logout struct {
	// Backchannel is the delivery of back-channel logout tokens to
	// clients' backchannel_logout_uri.
	Backchannel Backchannel `yaml:"backchannel"`
}

// Backchannel configures back-channel logout deliveries. Each is sent at
// once, then retried with exponential backoff (1s, 2s, 4s … at most a
// minute apart) until it is delivered or RetryFor has passed since the
// logout.
type Backchannel struct {
	// Timeout bounds one delivery attempt (default
	// DefaultBackchannelTimeout).
	Timeout *time.Duration `yaml:"timeout"`
	// RetryFor is how long a delivery is retried (default
	// DefaultBackchannelRetryFor, at most MaxBackchannelRetryFor).
	RetryFor *time.Duration `yaml:"retry_for"`
}

// Bounds of logout.backchannel.
const (
	DefaultBackchannelTimeout  = 5 * time.Second
	MaxBackchannelTimeout      = 60 * time.Second
	DefaultBackchannelRetryFor = 10 * time.Minute
	MaxBackchannelRetryFor     = 24 * time.Hour
)

// AttemptTimeout returns logout.backchannel.timeout or its default.
func (b Backchannel) AttemptTimeout() time.Duration {
	if b.Timeout == nil {
		return DefaultBackchannelTimeout
	}
	return *b.Timeout
}

// RetryPeriod returns logout.backchannel.retry_for or its default.
func (b Backchannel) RetryPeriod() time.Duration {
	if b.RetryFor == nil {
		return DefaultBackchannelRetryFor
	}
	return *b.RetryFor
}

// validateLogout checks the logout section and the clients' logout URIs.
func validateLogout(c *Config, ps *problems) {
	if d := c.Logout.Backchannel.Timeout; d != nil && (*d < 100*time.Millisecond || *d > MaxBackchannelTimeout) {
		ps.Add("logout.backchannel.timeout", "must be from 100ms to %s, not %s", MaxBackchannelTimeout, *d)
	}
	if d := c.Logout.Backchannel.RetryFor; d != nil && (*d < time.Second || *d > MaxBackchannelRetryFor) {
		ps.Add("logout.backchannel.retry_for", "must be from 1s to %s, not %s", MaxBackchannelRetryFor, *d)
	}
	for i, cl := range c.Clients {
		p := index("clients", i)
		if cl.BackchannelLogoutURI != "" {
			if msg := checkLogoutURI(cl.BackchannelLogoutURI); msg != "" {
				ps.Add(p+".backchannel_logout_uri", "%s", msg)
			}
		} else if cl.BackchannelLogoutSessionRequired {
			ps.Add(p+".backchannel_logout_session_required", "has no effect without backchannel_logout_uri")
		}
		if cl.FrontchannelLogoutURI != "" {
			if msg := checkLogoutURI(cl.FrontchannelLogoutURI); msg != "" {
				ps.Add(p+".frontchannel_logout_uri", "%s", msg)
			}
		} else if cl.FrontchannelLogoutSessionRequired {
			ps.Add(p+".frontchannel_logout_session_required", "has no effect without frontchannel_logout_uri")
		}
	}
}

// checkLogoutURI checks a back- or front-channel logout URI: absolute
// https (http only to a loopback host), no fragment, no user information,
// a valid port. It may carry a query (the broker adds iss and sid to a
// front-channel one's).
func checkLogoutURI(raw string) string {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return "not a URL: " + err.Error()
	case u.Scheme != "https" && u.Scheme != "http":
		return "must be an absolute https URI (http only to a loopback host)"
	case u.Host == "":
		return "needs a host"
	case u.Scheme == "http" && !IsLoopback(u.Hostname()):
		return "http is only allowed for localhost and loopback addresses; use https"
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return "must not have a fragment"
	case u.User != nil:
		return "must not contain user information"
	case !ValidURLPort(u):
		return "port must be a number from 1 to 65535 without leading zeros"
	}
	return ""
}
