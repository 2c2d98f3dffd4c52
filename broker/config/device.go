package config

import "time"

// GrantDeviceCode is the device authorization grant (RFC 8628): a client
// on a device without a browser shows a user code, and the person
// approves it in a browser elsewhere.
const GrantDeviceCode = "urn:ietf:params:oauth:grant-type:device_code"

// Device configures the device authorization grant (RFC 8628) for the
// clients that list GrantDeviceCode in their grant_types. Unset values take
// the defaults; read them with Lifetime, Interval and Attempts. The broker
// reads the section at start: a change takes a restart.
type Device struct {
	// CodeLifetime is how long a device code and its user code are good
	// for; default DefaultDeviceCodeLifetime.
	CodeLifetime *time.Duration `yaml:"code_lifetime"`
	// PollInterval is the least time between two polls of the token
	// endpoint (whole seconds); a faster poll gets slow_down and 5 s more.
	// Default DefaultDeviceInterval.
	PollInterval *time.Duration `yaml:"interval"`
	// UserCodeAttempts bounds the user codes one browser, and one client
	// address, may look up at the verification page; default
	// DefaultDeviceUserCodeAttempts.
	UserCodeAttempts *RateLimit `yaml:"user_code_attempts"`
}

// Defaults and bounds of the device section.
const (
	DefaultDeviceCodeLifetime = 10 * time.Minute
	DefaultDeviceInterval     = 5 * time.Second
	MinDeviceCodeLifetime     = time.Minute
	MaxDeviceCodeLifetime     = time.Hour
	MaxDeviceInterval         = time.Minute
)

// DefaultDeviceUserCodeAttempts is device.user_code_attempts when unset:
// 10 lookups at once, then one every 30 s, per browser and per address.
var DefaultDeviceUserCodeAttempts = RateLimit{Burst: 10, Every: 30 * time.Second}

// Lifetime returns the device code lifetime.
func (d Device) Lifetime() time.Duration {
	if d.CodeLifetime == nil {
		return DefaultDeviceCodeLifetime
	}
	return *d.CodeLifetime
}

// Interval returns the polling interval.
func (d Device) Interval() time.Duration {
	if d.PollInterval == nil {
		return DefaultDeviceInterval
	}
	return *d.PollInterval
}

// Attempts returns the user code lookup limit.
func (d Device) Attempts() RateLimit {
	if d.UserCodeAttempts == nil {
		return DefaultDeviceUserCodeAttempts
	}
	return *d.UserCodeAttempts
}

func validateDevice(c *Config, ps *problems) {
	d := c.Device
	if l := d.CodeLifetime; l != nil && (*l < MinDeviceCodeLifetime || *l > MaxDeviceCodeLifetime) {
		ps.Add("device.code_lifetime", "must be from %s to %s, not %s", MinDeviceCodeLifetime, MaxDeviceCodeLifetime, *l)
	}
	if i := d.PollInterval; i != nil {
		switch {
		case *i < time.Second || *i > MaxDeviceInterval || *i%time.Second != 0:
			ps.Add("device.interval", "must be whole seconds from 1s to %s, not %s", MaxDeviceInterval, *i)
		case *i*4 > d.Lifetime():
			ps.Add("device.interval", "must be at most a quarter of device.code_lifetime (%s), not %s", d.Lifetime(), *i)
		}
	}
	if l := d.UserCodeAttempts; l != nil {
		if l.Burst < 1 || l.Burst > 1_000_000 {
			ps.Add("device.user_code_attempts.burst", "must be from 1 to 1000000, not %d", l.Burst)
		}
		if l.Every <= 0 {
			ps.Add("device.user_code_attempts.every", "must be a positive duration such as 30s, not %s", l.Every)
		}
	}
}
