// Package testidp is a real OpenID Connect provider on an httptest.Server,
// for connector and broker flow tests (the demo runs its own upstreams,
// see demo/). It serves discovery,
// JWKS, authorize (auto-approving one configured user), token
// (authorization_code with PKCE S256, refresh_token, JWT-bearer for service
// accounts; the client authenticated by secret, by private_key_jwt or
// Entra-style certificate assertions, or not at all as a public client), userinfo, a Microsoft Graph transitiveMemberOf endpoint and the
// Google Admin Directory groups endpoint. ID tokens are signed with go-jose.
//
// Knobs make it misbehave on purpose: authorize and token errors, delays,
// key rotation, disabled users, wrong nonces, expired tokens, tokens signed
// by a foreign key, and a fake issuer value. Others make it stricter than
// the default: RFC 9207's iss on authorization responses, and offline_access
// honoured only with prompt=consent (OpenID Connect Core §11).
//
// It does not import "testing" and holds no global state: an IdP is safe for
// concurrent use, and many may run in one process. It is not a production
// identity provider: /authorize asks nobody anything.
package testidp

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Options configure an IdP. The zero value is usable.
type Options struct {
	// ClientID and ClientSecret are the one registered client.
	// Defaults: "client" and "secret".
	ClientID     string
	ClientSecret string
	// Algorithm signs ID tokens: jose.ES256 (default) or jose.RS256.
	Algorithm jose.SignatureAlgorithm
	// TokenLifetime of ID and access tokens (default 1h).
	TokenLifetime time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// PageSize of Graph and Directory group listings (default 100).
	PageSize int
	// Listener, when set, is where the server listens (a fixed address);
	// default a fresh loopback port.
	Listener net.Listener
}

// User is an account at the IdP.
type User struct {
	// Subject is the sub claim. Required.
	Subject string
	// Claims are added to the ID token and to userinfo. An "iss" here
	// replaces the issuer in this user's ID tokens (Entra tenants).
	Claims map[string]any
	// UserinfoClaims appear only at /userinfo.
	UserinfoClaims map[string]any
	// Groups are returned by the Graph and Directory endpoints.
	Groups []Group
}

// Group is a group a user is a (transitive) member of.
type Group struct {
	ID          string // Graph object id, or Directory group id
	DisplayName string // Graph displayName, or Directory name
	Email       string // Directory email
}

// Tamper makes the next ID tokens wrong in chosen ways. The zero value
// tampers with nothing.
type Tamper struct {
	WrongNonce  bool           // nonce claim differs from the request's
	Expired     bool           // exp in the past
	ForeignKey  bool           // signed by an unpublished key under the current kid
	UnknownKid  bool           // signed by an unpublished key under a new kid
	WrongAud    bool           // aud is another client
	ExtraClaims map[string]any // set (or with a nil value, removed) last
}

// IdP is a running test OpenID Connect provider.
type IdP struct {
	srv  *httptest.Server
	opts Options

	mu          sync.Mutex
	issuer      string
	keys        []signingKey // keys[0] signs; all are published
	foreign     signingKey
	users       map[string]*userState
	login       string
	authzErr    string
	tokenErr    string
	tokenStatus int
	delay       time.Duration
	tamper      Tamper
	codes       map[string]*grant
	refresh     map[string]*grant
	access      map[string]*grant
	keyFetches  int
	sa          map[string]crypto.PublicKey
	saKey       *rsa.PrivateKey

	issParam      IssParameter
	strictOffline bool
	scopes        []string // scopes_supported; nil: the default list
	lastAuthorize map[string][]string
	clientAuth    ClientAuth
	jtis          map[string]time.Time // client assertion ids seen, with their exp
	assertions    []Assertion

	endSession     bool       // advertise end_session_endpoint (logout.go)
	lastEndSession url.Values // its last request

	noRefreshIDToken bool // refresh responses without id_token
}

type userState struct {
	User
	disabled bool
}

type signingKey struct {
	kid string
	key crypto.Signer
	alg jose.SignatureAlgorithm
}

// grant is what a code, refresh token or access token stands for.
type grant struct {
	sub, nonce, redirectURI, challenge, scope string
	expires                                   time.Time
}

// New starts an IdP on a fresh httptest.Server. Close it when done.
func New(opts Options) *IdP {
	if opts.ClientID == "" {
		opts.ClientID = "client"
	}
	if opts.ClientSecret == "" {
		opts.ClientSecret = "secret"
	}
	if opts.Algorithm == "" {
		opts.Algorithm = jose.ES256
	}
	if opts.TokenLifetime == 0 {
		opts.TokenLifetime = time.Hour
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.PageSize == 0 {
		opts.PageSize = 100
	}
	p := &IdP{
		opts:    opts,
		users:   map[string]*userState{},
		codes:   map[string]*grant{},
		refresh: map[string]*grant{},
		access:  map[string]*grant{},
		sa:      map[string]crypto.PublicKey{},
	}
	p.keys = []signingKey{p.newKey()}
	p.foreign = p.newKey()
	p.srv = httptest.NewUnstartedServer(p.routes())
	if opts.Listener != nil {
		p.srv.Listener.Close()
		p.srv.Listener = opts.Listener
	}
	// The issuer is set before the server starts: a listener handed in
	// may already hold connections, served the moment Start returns.
	p.issuer = "http://" + p.srv.Listener.Addr().String()
	p.srv.Start()
	return p
}

// Close shuts the server down.
func (p *IdP) Close() { p.srv.Close() }

// URL is the server's base URL (also the default issuer).
func (p *IdP) URL() string { return p.srv.URL }

// Issuer is the issuer published in discovery and put in ID tokens.
func (p *IdP) Issuer() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.issuer
}

// SetIssuer changes the issuer value published in discovery and ID tokens,
// for example to a fake value (issuer mismatch) or to an Entra-style
// "https://login.example/{tenantid}/v2.0" template. Endpoints stay at URL().
func (p *IdP) SetIssuer(iss string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.issuer = iss
}

// ClientID is the registered client's id.
func (p *IdP) ClientID() string { return p.opts.ClientID }

// ClientSecret is the registered client's secret.
func (p *IdP) ClientSecret() string { return p.opts.ClientSecret }

// SetUser adds or replaces u (by Subject) and makes it the user /authorize
// approves. It re-enables a disabled user.
func (p *IdP) SetUser(u User) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.users[u.Subject] = &userState{User: u}
	p.login = u.Subject
}

// DisableUser makes refresh_token grants for sub fail with invalid_grant,
// and /authorize answer access_denied while sub is the login user.
func (p *IdP) DisableUser(sub string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if u, ok := p.users[sub]; ok {
		u.disabled = true
	}
}

// RotateKey replaces the signing key with a new one (new kid) and stops
// publishing the old one. It returns the new kid.
func (p *IdP) RotateKey() string {
	k := p.newKey()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.keys = []signingKey{k}
	return k.kid
}

// SetAuthorizeError makes /authorize redirect back with error=code (for
// example "access_denied"); "" restores normal operation.
func (p *IdP) SetAuthorizeError(code string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.authzErr = code
}

// SetTokenError makes /token answer with an OAuth error code and HTTP
// status (400 when status is 0); code "" restores normal operation.
func (p *IdP) SetTokenError(status int, code string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if status == 0 {
		status = http.StatusBadRequest
	}
	p.tokenErr, p.tokenStatus = code, status
}

// SetDelay makes every endpoint wait d before answering (0 disables).
func (p *IdP) SetDelay(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.delay = d
}

// SetTamper makes the following ID tokens wrong as t says.
func (p *IdP) SetTamper(t Tamper) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.tamper = t
}

// KeyFetches counts the requests served at /keys.
func (p *IdP) KeyFetches() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.keyFetches
}

// ServiceAccount registers a Google-style service account and returns its
// JSON key file (type, client_email, private_key, private_key_id, token_uri
// pointing at this IdP's /token). JWT-bearer assertions it signs are
// accepted at /token and yield access tokens for the Directory endpoint.
func (p *IdP) ServiceAccount(email string) []byte {
	p.mu.Lock()
	if p.saKey == nil {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(fmt.Sprintf("testidp: rsa key: %v", err))
		}
		p.saKey = k
	}
	key := p.saKey
	p.sa[email] = &key.PublicKey
	p.mu.Unlock()
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	return mustJSON(map[string]string{
		"type":           "service_account",
		"client_email":   email,
		"private_key":    string(pemKey),
		"private_key_id": "sa1",
		"token_uri":      p.srv.URL + "/token",
	})
}

func (p *IdP) newKey() signingKey {
	var k crypto.Signer
	var err error
	switch p.opts.Algorithm {
	case jose.RS256:
		k, err = rsa.GenerateKey(rand.Reader, 2048)
	default:
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		panic(fmt.Sprintf("testidp: key: %v", err))
	}
	return signingKey{kid: randString(8), key: k, alg: p.opts.Algorithm}
}

func (p *IdP) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", p.discovery)
	mux.HandleFunc("GET /{prefix...}", p.prefixed)
	mux.HandleFunc("GET /keys", p.jwks)
	mux.HandleFunc("GET /authorize", p.authorize)
	mux.HandleFunc("POST /token", p.token)
	mux.HandleFunc("GET /userinfo", p.userinfo)
	mux.HandleFunc("GET /end_session", p.endSessionHandler)
	mux.HandleFunc("GET /v1.0/users/{id}/transitiveMemberOf", p.graphGroups)
	mux.HandleFunc("GET /admin/directory/v1/groups", p.directoryGroups)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		d := p.delay
		p.mu.Unlock()
		if d > 0 {
			select {
			case <-time.After(d):
			case <-r.Context().Done():
				return
			}
		}
		mux.ServeHTTP(w, r)
	})
}

// prefixed serves discovery under any path prefix, so a tenant path such as
// /{tenant}/v2.0/.well-known/openid-configuration works.
func (p *IdP) prefixed(w http.ResponseWriter, r *http.Request) {
	const suffix = "/.well-known/openid-configuration"
	if len(r.URL.Path) > len(suffix) && r.URL.Path[len(r.URL.Path)-len(suffix):] == suffix {
		p.discovery(w, r)
		return
	}
	http.NotFound(w, r)
}

func randString(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// CallbackRequest plays the browser: it GETs loginURL without following
// redirects and returns the request the browser would then make to the
// Location it was sent to (the callback, with code and state or error).
// It fails unless the answer is a redirect.
func CallbackRequest(ctx context.Context, loginURL string) (*http.Request, error) {
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, loginURL, nil)
	if err != nil {
		return nil, fmt.Errorf("testidp: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("testidp: get %s: %w", loginURL, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		return nil, fmt.Errorf("testidp: get authorize: status %d, want 302", resp.StatusCode)
	}
	loc := resp.Header.Get("Location")
	cb, err := http.NewRequestWithContext(ctx, http.MethodGet, loc, nil)
	if err != nil {
		return nil, fmt.Errorf("testidp: location %q: %w", loc, err)
	}
	cb.RequestURI = cb.URL.RequestURI()
	return cb, nil
}
