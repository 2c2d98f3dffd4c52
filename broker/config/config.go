// Package config loads, expands and validates the broker's YAML
// configuration. Every problem is reported with its YAML path, all at once.
package config

import (
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/fedbroker/fedbroker/mapping/spec"
)

// Config is the whole configuration file.
type Config struct {
	Issuer     string               `yaml:"issuer"`
	HTTP       HTTP                 `yaml:"http"`
	Storage    Storage              `yaml:"storage"`
	Signing    Signing              `yaml:"signing"`
	Tokens     Tokens               `yaml:"tokens"`
	Connectors []Connector          `yaml:"connectors"`
	Mappings   map[string]spec.Spec `yaml:"mappings"`
	Clients    []Client             `yaml:"clients"`
	Links      Links                `yaml:"links"`
	Workloads  []Workload           `yaml:"workloads"`
	Admin      Admin                `yaml:"admin"`
	Device     Device               `yaml:"device"`
	PAR        PAR                  `yaml:"par"`
	Logout     Logout               `yaml:"logout"`
}

// Admin is the admin API listener (off unless addr and a token or mTLS are
// set).
type Admin struct {
	Addr  string    `yaml:"addr"` // default 127.0.0.1:5557 when enabled
	Token string    `yaml:"token"`
	TLS   *AdminTLS `yaml:"tls"`
	// Workbench configures the console's mapping workbench.
	Workbench AdminWorkbench `yaml:"workbench"`
}

// AdminWorkbench configures the console's mapping workbench.
type AdminWorkbench struct {
	// SamplesDir holds saved sample identities, NAME.json in the object
	// form of `fedbroker mapping test` (the --golden layout), that the
	// workbench compares a draft mapping against the running one on.
	SamplesDir string `yaml:"samples_dir"`
}

// AdminTLS serves the admin API over TLS, with client certificates required
// when ClientCAFile is set.
type AdminTLS struct {
	CertFile     string `yaml:"cert_file"`
	KeyFile      string `yaml:"key_file"`
	ClientCAFile string `yaml:"client_ca_file"`
}

// HTTP is the public listener.
type HTTP struct {
	Addr string `yaml:"addr"` // default 127.0.0.1:5556
	TLS  *TLS   `yaml:"tls"`
	// TrustedProxies never change the issuer or endpoint URLs; they only
	// decide which X-Forwarded-For hop is the client address for rate limits.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// HSTSMaxAge is the max-age of the Strict-Transport-Security header an
	// https issuer sends (Go duration syntax, whole seconds); unset:
	// DefaultHSTSMaxAge, 0s: no header. Read it with HSTS.
	HSTSMaxAge *time.Duration `yaml:"hsts_max_age"`
	// SignInLimit bounds the sign-ins (pending auth requests) one client
	// address may start, per replica; unset: DefaultSignInLimit.
	SignInLimit *RateLimit `yaml:"sign_in_limit"`
	// DrainPeriod is how long serve keeps the listener open after SIGTERM
	// with /readyz answering 503, so that load balancers stop sending
	// before it closes (Go duration syntax); unset: DefaultDrainPeriod,
	// 0s: close at once. Read it with Drain.
	DrainPeriod *time.Duration `yaml:"drain_period"`
}

// RateLimit is a token bucket: Burst at once, then one more every Every.
type RateLimit struct {
	Burst int           `yaml:"burst"`
	Every time.Duration `yaml:"every"`
}

// DefaultSignInLimit is http.sign_in_limit when unset: 60 sign-ins at
// once, then one every 10 s (about 120 pending per address over the 10
// minutes an auth request lives).
var DefaultSignInLimit = RateLimit{Burst: 60, Every: 10 * time.Second}

// SignIns returns the sign-in limit per client address.
func (h HTTP) SignIns() RateLimit {
	if h.SignInLimit == nil {
		return DefaultSignInLimit
	}
	return *h.SignInLimit
}

// DefaultHSTSMaxAge is http.hsts_max_age when unset: one year.
const DefaultHSTSMaxAge = 365 * 24 * time.Hour

// HSTS returns the Strict-Transport-Security max-age: DefaultHSTSMaxAge
// when unset, 0 when turned off.
func (h HTTP) HSTS() time.Duration {
	if h.HSTSMaxAge == nil {
		return DefaultHSTSMaxAge
	}
	return *h.HSTSMaxAge
}

// DefaultDrainPeriod is http.drain_period when unset.
const DefaultDrainPeriod = 5 * time.Second

// Drain returns the drain period: DefaultDrainPeriod when unset, 0 when
// turned off.
func (h HTTP) Drain() time.Duration {
	if h.DrainPeriod == nil {
		return DefaultDrainPeriod
	}
	return *h.DrainPeriod
}

// TLS serves the public listener over TLS 1.2+.
type TLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Storage selects the backend.
type Storage struct {
	Type     string   `yaml:"type"` // memory | redis | sqlite | postgres
	Redis    Redis    `yaml:"redis"`
	SQLite   SQLite   `yaml:"sqlite"`
	Postgres Postgres `yaml:"postgres"`
}

// SQLite configures the embedded, durable single-node backend: one file
// (plus its -wal and -shm files next to it) that one broker process owns.
type SQLite struct {
	// Path of the database file; created when missing. Default
	// DefaultSQLitePath, relative to the working directory.
	Path string `yaml:"path"`
}

// Postgres configures the PostgreSQL backend for fleets. URL is
// postgres://user@host:port/db?sslmode=…; leave the password out and set
// PGPASSWORD in the environment (or use ${VAR} expansion).
type Postgres struct {
	URL string `yaml:"url"`
}

// Redis configures the production backend. URL forms:
//
//	redis://[user:pass@]host:port[/db]          one node
//	rediss://...                                 one node over TLS
//	redis-sentinel://[user:pass@]h1:p1,h2:p2/master-name[?db=N]
//	redis-cluster://[user:pass@]h1:p1,h2:p2
type Redis struct {
	URL       string `yaml:"url"`
	KeyPrefix string `yaml:"key_prefix"` // default "fb"
	// EvictionPolicy decides what happens when Redis runs with an evicting
	// maxmemory-policy: "refuse" (default) or "warn".
	EvictionPolicy string `yaml:"eviction_policy"`
	// RequireDurability refuses to start when Redis persists less than
	// this: "aof" (append-only file on), "rdb" (snapshots or AOF) or
	// "none" (default, empty: accept anything). Unknown persistence
	// (INFO and CONFIG refused) meets only none.
	RequireDurability string `yaml:"require_durability"`
}

// Signing configures the broker's signing keys.
type Signing struct {
	// Algorithm signs tokens unless a client asks otherwise: ES256 (default),
	// RS256 or EdDSA.
	Algorithm string `yaml:"algorithm"`
	// Algorithms are extra algorithms to keep keys for (clients may request
	// them with id_token_signed_response_alg).
	Algorithms     []string      `yaml:"algorithms"`
	RotationPeriod time.Duration `yaml:"rotation_period"` // default 24h
	// KeyEncryptionKey encrypts private keys at rest: 32 bytes, base64.
	KeyEncryptionKey string      `yaml:"key_encryption_key"`
	StaticKeys       []StaticKey `yaml:"static_keys"`
}

// StaticKey is a signing key from a PEM file instead of generated keys.
type StaticKey struct {
	File  string `yaml:"file"`
	KeyID string `yaml:"kid"`
}

// Tokens are lifetimes.
type Tokens struct {
	IDToken         time.Duration `yaml:"id_token"`         // default 5m
	AccessToken     time.Duration `yaml:"access_token"`     // default 5m
	RefreshIdle     time.Duration `yaml:"refresh_idle"`     // default 24h
	RefreshAbsolute time.Duration `yaml:"refresh_absolute"` // default 720h
	AuthCode        time.Duration `yaml:"auth_code"`        // default 60s
	AuthRequest     time.Duration `yaml:"auth_request"`     // default 10m
	Session         time.Duration `yaml:"session"`          // default 12h
	// RefreshRetryWindow is how long after a refresh the refresh token it
	// replaced may be presented again by the same client and answered
	// with the same new refresh token (a response lost to a replica that
	// died), rather than revoking the family as reuse (Go duration
	// syntax); unset: DefaultRefreshRetryWindow, 0s: never. Read it with
	// RefreshRetry.
	RefreshRetryWindow *time.Duration `yaml:"refresh_retry_window"`
	// DPoP configures DPoP (RFC 9449) proofs at the token endpoint and
	// the resource endpoints (see DPoP).
	DPoP DPoP `yaml:"dpop"`
}

// DefaultRefreshRetryWindow is tokens.refresh_retry_window when unset.
const DefaultRefreshRetryWindow = 5 * time.Second

// MaxRefreshRetryWindow bounds tokens.refresh_retry_window: a retry is a
// client resending a request at once, not a token replayed later.
const MaxRefreshRetryWindow = time.Minute

// RefreshRetry returns the refresh retry window: DefaultRefreshRetryWindow
// when unset, 0 when turned off.
func (t Tokens) RefreshRetry() time.Duration {
	if t.RefreshRetryWindow == nil {
		return DefaultRefreshRetryWindow
	}
	return *t.RefreshRetryWindow
}

// Connector is one upstream. Config holds the type-specific block as
// written; Decode decodes and validates it with the connector type's own
// Config.
type Connector struct {
	ID      string    `yaml:"id"`
	Type    string    `yaml:"type"`
	Name    string    `yaml:"name"`
	Mapping string    `yaml:"mapping"` // name under mappings; empty: the type's default
	Config  yaml.Node `yaml:"config"`
	// Domains routes a login_hint ending in @domain straight to this
	// connector.
	Domains []string `yaml:"domains"`
	// UpstreamLogout, when false, keeps a sign-out at the broker from
	// ending the person's session at this connector's upstream (OpenID
	// end_session_endpoint, SAML single logout). Unset: true, where the
	// connector type supports it. Logout notices from the upstream are
	// accepted either way.
	UpstreamLogout *bool `yaml:"upstream_logout"`
}

// LogsOutUpstream reports whether a sign-out at the broker ends the
// upstream session too (upstream_logout, default true).
func (c Connector) LogsOutUpstream() bool { return c.UpstreamLogout == nil || *c.UpstreamLogout }

// Client is a downstream application.
type Client struct {
	ID   string `yaml:"id"`
	Name string `yaml:"name"`
	// SecretHash is the output of `fedbroker hash-secret`. Empty with
	// Public=true for public clients.
	SecretHash string `yaml:"secret_hash"`
	Public     bool   `yaml:"public"`
	// TokenEndpointAuthMethod is client_secret_basic/client_secret_post
	// (default for confidential clients: either) or private_key_jwt (RFC
	// 7523), which needs JWKS or JWKSURI instead of a secret.
	TokenEndpointAuthMethod string `yaml:"token_endpoint_auth_method"`
	// JWKS is the client's public keys as an inline JWK Set (JSON).
	JWKS string `yaml:"jwks"`
	// JWKSURI is where the client publishes its public keys.
	JWKSURI                string   `yaml:"jwks_uri"`
	RedirectURIs           []string `yaml:"redirect_uris"`
	PostLogoutRedirectURIs []string `yaml:"post_logout_redirect_uris"`
	// Audiences are the access token `aud` values (resource servers).
	// Default: the client id.
	Audiences []string `yaml:"audiences"`
	// Scopes the client may ask for; default openid profile email groups
	// offline_access.
	Scopes []string `yaml:"scopes"`
	// GrantTypes allowed; default authorization_code and refresh_token.
	GrantTypes []string `yaml:"grant_types"`
	// Connectors the client may use; default all.
	Connectors []string `yaml:"connectors"`
	// IDTokenSignedResponseAlg overrides signing.algorithm for this client.
	IDTokenSignedResponseAlg string `yaml:"id_token_signed_response_alg"`
	// Workloads are the workload issuers whose tokens the client may
	// exchange.
	Workloads []string `yaml:"workloads"`
	// AllowIDTokenExchange lets token exchange return an ID token.
	AllowIDTokenExchange bool          `yaml:"allow_id_token_exchange"`
	AccessTokenLifetime  time.Duration `yaml:"access_token_lifetime"`
	IDTokenLifetime      time.Duration `yaml:"id_token_lifetime"`

	// DelegateAnyAudience lets the client exchange (delegation) the
	// broker's access tokens whatever their audience; by default a subject
	// token must have been issued to the client (client_id) or name it in
	// aud.
	DelegateAnyAudience bool `yaml:"delegate_any_audience"`
	// RequireDPoP refuses the client's token requests without a DPoP
	// proof (RFC 9449 §5.2, dpop_bound_access_tokens): all its access
	// tokens are bound to a key.
	RequireDPoP bool `yaml:"require_dpop"`

	// Profile names the platform the client's tokens are presented to
	// (aws, gcp, azure, vault, kubernetes; see Platforms): its rules are
	// checked and its defaults filled in. Empty: none.
	Profile string `yaml:"profile"`
	// RequirePushedAuthorizationRequests refuses the client's
	// authorization requests unless they were pushed first (RFC 9126 §6).
	RequirePushedAuthorizationRequests bool `yaml:"require_pushed_authorization_requests"`
	// BackchannelLogoutURI receives a logout token (OpenID Connect
	// Back-Channel Logout 1.0) when a session that signed into this client
	// ends; BackchannelLogoutSessionRequired asks for the sid claim in it
	// (the broker always sends it when the session has one).
	BackchannelLogoutURI             string `yaml:"backchannel_logout_uri"`
	BackchannelLogoutSessionRequired bool   `yaml:"backchannel_logout_session_required"`
	// FrontchannelLogoutURI is loaded in an iframe of the broker's
	// signed-out page (OpenID Connect Front-Channel Logout 1.0), with iss
	// and sid when FrontchannelLogoutSessionRequired.
	FrontchannelLogoutURI             string `yaml:"frontchannel_logout_uri"`
	FrontchannelLogoutSessionRequired bool   `yaml:"frontchannel_logout_session_required"`
}

// Links declares which connectors may link identities with each other.
// Each group is a set of connector ids whose identities with the same link
// key resolve to one internal subject.
type Links struct {
	Groups [][]string `yaml:"groups"`
}

// Workload is a trusted workload issuer (GitHub Actions, a Kubernetes
// cluster, a cloud's workload identity) whose JWTs clients may exchange
// for the broker's tokens.
//
// Config holds the issuer's block as written; Decode decodes and validates
// it into the workload package's Config.
type Workload struct {
	ID      string    `yaml:"id"`
	Mapping string    `yaml:"mapping"` // name under mappings; empty: the default workload mapping
	Config  yaml.Node `yaml:"config"`
}
