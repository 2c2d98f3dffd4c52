package oidc

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"

	"github.com/fedbroker/fedbroker/connectors"
	"github.com/fedbroker/fedbroker/connectors/jwks"
)

// Extension lets a connector package built on this one (google, azuread)
// adjust discovery, claim checks, the subject and extra data. Every field
// is optional. Hooks return *connectors.UserError for failures a person may
// see.
type Extension struct {
	// DiscoveryIssuer, when set, is the issuer the discovery document must
	// publish instead of Config.Issuer (Entra multi-tenant endpoints publish
	// a "{tenantid}" template). It also turns off go-oidc's issuer check on
	// ID tokens, so CheckClaims MUST then check iss itself.
	DiscoveryIssuer string
	// AuthParams are added to the authorization request.
	AuthParams url.Values
	// NoOfflineScope stops the offline_access scope from being requested
	// (Google wants access_type=offline in AuthParams instead).
	NoOfflineScope bool
	// NoConsentPrompt stops prompt=consent from being sent with the
	// offline_access scope, for an upstream that issues refresh tokens
	// without it and would otherwise show its consent page on every
	// sign-in (Entra ID).
	NoConsentPrompt bool
	// CheckClaims vets the verified ID token claims (merged with userinfo)
	// on sign-in and on refresh.
	CheckClaims func(ctx context.Context, claims map[string]any) error
	// Subject derives the stable upstream subject (default: sub).
	Subject func(claims map[string]any) (string, error)
	// Enrich adds data fetched beyond the ID token (groups) to id, on
	// sign-in and on refresh. tok is the upstream token response.
	Enrich func(ctx context.Context, tok *oauth2.Token, id *connectors.Identity) error
}

// Connector signs people in at one upstream OpenID Connect provider.
type Connector struct {
	id    string
	cfg   Config
	ext   Extension
	oauth oauth2.Config
	// verifierConfig configures go-oidc's ID token verifier (see
	// checkedVerify).
	verifierConfig *oidc.Config
	provider       *oidc.Provider
	keys           *jwks.Remote
	client         *http.Client
	tokenClient    *http.Client // client for the token endpoint (adds client assertions)
	callbackURL    string
	params         url.Values // added to every authorization request
	now            func() time.Time
	logger         *slog.Logger

	wantRefresh    bool // offline_access is on: an upstream refresh token is wanted
	askOffline     bool // the offline_access scope is requested
	scopeNotListed bool // wanted, but the upstream does not list offline_access
	issRequired    bool // the upstream advertises authorization_response_iss_parameter_supported
	track          offlineTracker

	algs              []jose.SignatureAlgorithm // allowed_algorithms
	endSession        string                    // the upstream's end_session_endpoint; "" when none or ignored (see logout.go)
	endSessionWarning string                    // why an end_session_endpoint was ignored
}

// Compile-time checks of the contract.
var (
	_ connectors.CallbackConnector = (*Connector)(nil)
	_ connectors.RefreshConnector  = (*Connector)(nil)
	_ connectors.HealthChecker     = (*Connector)(nil)
)

// connState is the per-login state the broker keeps with its auth request.
type connState struct {
	Verifier    string `json:"v"`
	Nonce       string `json:"n"`
	RedirectURI string `json:"r"`
}

// Open discovers the upstream with opts.HTTPClient and builds a Connector
// from cfg (defaults applied here) and ext. Validate cfg first.
func Open(ctx context.Context, id string, cfg Config, opts connectors.Options, ext Extension) (*Connector, error) {
	cfg = cfg.withDefaults()
	client := http.DefaultClient
	if opts.HTTPClient != nil {
		client = opts.HTTPClient
	}
	cl := *client
	if cl.Timeout == 0 || cl.Timeout > cfg.Timeout {
		cl.Timeout = cfg.Timeout
	}
	c := &Connector{id: id, cfg: cfg, ext: ext, client: &cl, callbackURL: opts.CallbackURL, now: opts.Now, logger: opts.Logger}
	if c.now == nil {
		c.now = time.Now
	}
	if c.logger == nil {
		c.logger = slog.New(slog.DiscardHandler)
	}

	dctx := oidc.ClientContext(ctx, c.client)
	if ext.DiscoveryIssuer != "" {
		dctx = oidc.InsecureIssuerURLContext(dctx, ext.DiscoveryIssuer)
	}
	dctx, cancel := context.WithTimeout(dctx, cfg.Timeout)
	defer cancel()
	p, err := oidc.NewProvider(dctx, cfg.Issuer)
	if err != nil {
		if unreachable(err) {
			return nil, fmt.Errorf("oidc: discovery at %s: %w: %w", cfg.Issuer, connectors.ErrUnavailable, err)
		}
		return nil, fmt.Errorf("oidc: discovery at %s: %w", cfg.Issuer, err)
	}
	var meta struct {
		JWKSURL     string   `json:"jwks_uri"`
		Scopes      []string `json:"scopes_supported"`
		IssResponse bool     `json:"authorization_response_iss_parameter_supported"`
	}
	if err := p.Claims(&meta); err != nil {
		return nil, fmt.Errorf("oidc: discovery document: %w", err)
	}
	if meta.JWKSURL == "" {
		return nil, fmt.Errorf("oidc: discovery document has no jwks_uri")
	}
	c.provider = p
	c.issRequired = meta.IssResponse
	c.wantRefresh = *cfg.OfflineAccess
	listed := len(meta.Scopes) == 0 || slices.Contains(meta.Scopes, "offline_access")
	c.scopeNotListed = c.wantRefresh && !ext.NoOfflineScope && !listed
	if c.scopeNotListed {
		c.logger.Warn("oidc: upstream does not list the offline_access scope; it is not requested", "connector", id, "issuer", cfg.Issuer)
	}

	algs := make([]jose.SignatureAlgorithm, len(cfg.AllowedAlgorithms))
	for i, a := range cfg.AllowedAlgorithms {
		algs[i] = jose.SignatureAlgorithm(a)
	}
	c.algs = algs
	c.keys = jwks.NewRemote(meta.JWKSURL, jwks.Options{Client: c.client, Now: c.now, MinRefresh: cfg.KeyRefreshInterval, MaxAge: time.Hour, Algorithms: algs})
	c.verifierConfig = &oidc.Config{
		ClientID:             cfg.ClientID,
		SupportedSigningAlgs: cfg.AllowedAlgorithms,
		SkipIssuerCheck:      ext.DiscoveryIssuer != "",
		Now:                  c.now,
	}
	scopes := slices.Clone(cfg.Scopes)
	if c.wantRefresh && !ext.NoOfflineScope && listed && !slices.Contains(scopes, "offline_access") {
		scopes = append(scopes, "offline_access")
	}
	c.askOffline = slices.Contains(scopes, "offline_access")
	c.params = authParams(cfg, ext, c.askOffline)
	c.oauth = oauth2.Config{
		ClientID:     cfg.ClientID,
		ClientSecret: cfg.ClientSecret,
		Endpoint:     p.Endpoint(),
		Scopes:       scopes,
	}
	if err := c.setupClientAuth(); err != nil {
		return nil, err
	}
	if err := c.setupLogout(); err != nil {
		return nil, err
	}
	return c, nil
}

// ID is the connector's id in config.
func (c *Connector) ID() string { return c.id }

// HTTPClient is the client (with the configured timeout) the connector uses
// upstream; packages built on this one use it for their own calls.
func (c *Connector) HTTPClient() *http.Client { return c.client }

// LoginURL returns the upstream authorization URL with PKCE S256, a fresh
// nonce and state, and the configured extra parameters (prompt,
// domain_hint, acr_values, auth_params). connState is a small JSON object (PKCE verifier, nonce,
// redirect URI) to be kept server-side by the broker; it is not encrypted.
// An empty callbackURL means Options.CallbackURL.
func (c *Connector) LoginURL(ctx context.Context, s connectors.Scopes, callbackURL, state string) (string, []byte, error) {
	if callbackURL == "" {
		callbackURL = c.callbackURL
	}
	if callbackURL == "" || state == "" {
		return "", nil, fmt.Errorf("oidc: LoginURL needs a callback URL and a state")
	}
	st := connState{Verifier: oauth2.GenerateVerifier(), Nonce: randomString(), RedirectURI: callbackURL}
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(st.Verifier), oidc.Nonce(st.Nonce)}
	for k, vs := range c.params {
		for _, v := range vs {
			opts = append(opts, oauth2.SetAuthURLParam(k, v))
		}
	}
	oc := c.oauth
	oc.RedirectURL = callbackURL
	b, err := json.Marshal(st)
	if err != nil {
		return "", nil, fmt.Errorf("oidc: encode state: %w", err)
	}
	return oc.AuthCodeURL(state, opts...), b, nil
}

// HandleCallback completes the sign-in from the upstream's redirect: it
// checks iss (RFC 9207, see checkResponseIssuer), exchanges the code (with
// the PKCE verifier), verifies the ID token (signature, algorithm, iss,
// aud, exp, iat not in the future, nonce), merges userinfo when
// configured, checks email_verified, keeps the upstream refresh token (or
// applies offline_access_missing, see keepRefresh) and returns the
// Identity. The state parameter is the broker's to check. Failures are
// *connectors.UserError.
func (c *Connector) HandleCallback(ctx context.Context, s connectors.Scopes, rawState []byte, r *http.Request) (connectors.Identity, error) {
	var st connState
	if len(rawState) == 0 || json.Unmarshal(rawState, &st) != nil || st.Verifier == "" || st.Nonce == "" || st.RedirectURI == "" {
		return connectors.Identity{}, userError(CodeInvalidState, "This sign-in attempt is not valid any more. Please start again.", fmt.Errorf("oidc: missing or malformed connector state"))
	}
	q := r.URL.Query()
	iss, err := c.checkResponseIssuer(q)
	if err != nil {
		return connectors.Identity{}, err
	}
	if e := q.Get("error"); e != "" {
		return connectors.Identity{}, authorizeError(e, q.Get("error_description"))
	}
	code := q.Get("code")
	if code == "" {
		return connectors.Identity{}, userError(CodeInvalidResponse, "The identity provider sent an incomplete answer.", fmt.Errorf("oidc: callback without code or error"))
	}
	oc := c.oauth
	oc.RedirectURL = st.RedirectURI
	tok, err := oc.Exchange(c.tokenContext(ctx), code, oauth2.VerifierOption(st.Verifier))
	if err != nil {
		return connectors.Identity{}, tokenError("exchange code", err)
	}
	claims, err := c.verify(ctx, tok, st.Nonce)
	if err != nil {
		return connectors.Identity{}, err
	}
	if err := c.checkTokenIssuer(iss, claims); err != nil {
		return connectors.Identity{}, err
	}
	id, err := c.identity(ctx, tok, claims)
	if err != nil {
		return connectors.Identity{}, err
	}
	if err := c.keepRefresh(&id, tok, claims); err != nil {
		return connectors.Identity{}, err
	}
	raw, _ := tok.Extra("id_token").(string)
	c.keepIDToken(&id, raw)
	return id, nil
}

// Refresh asks the upstream again with the refresh token kept in
// id.ConnectorData and returns the updated Identity. An upstream that
// refuses (invalid_grant: user disabled, token revoked) yields a
// *connectors.UserError with Code CodeRefreshDenied. When the upstream gave
// no refresh token at sign-in, offline_access_missing decides (see
// refreshWithoutToken); with offline_access off, id is returned unchanged.
func (c *Connector) Refresh(ctx context.Context, s connectors.Scopes, id connectors.Identity) (connectors.Identity, error) {
	var data connectorData
	if len(id.ConnectorData) > 0 {
		if err := json.Unmarshal(id.ConnectorData, &data); err != nil {
			return connectors.Identity{}, userError(CodeInvalidState, "Please sign in again.", fmt.Errorf("oidc: decode connector data: %w", err))
		}
	}
	if data.RefreshToken == "" {
		return c.refreshWithoutToken(id, data)
	}
	tok, err := c.oauth.TokenSource(c.tokenContext(ctx), &oauth2.Token{RefreshToken: data.RefreshToken}).Token()
	if err != nil {
		return connectors.Identity{}, tokenError("refresh", err)
	}
	if tok.RefreshToken == "" {
		tok.RefreshToken = data.RefreshToken
	}
	newIDToken, _ := tok.Extra("id_token").(string)
	var claims map[string]any
	switch {
	case newIDToken != "":
		if claims, err = c.verify(ctx, tok, ""); err != nil {
			return connectors.Identity{}, err
		}
	case !c.cfg.UserInfo:
		// No ID token (OIDC Core §12.2 makes it optional on refresh) and
		// no userinfo: the upstream accepted this account's refresh token
		// and said nothing new about it.
		nid := connectors.Identity{Subject: id.Subject, SessionID: id.SessionID, ClaimsUnchanged: true}
		if nid.ConnectorData, err = json.Marshal(connectorData{RefreshToken: tok.RefreshToken}); err != nil {
			return connectors.Identity{}, fmt.Errorf("oidc: encode connector data: %w", err)
		}
		return nid, nil
	default:
		claims = make(map[string]any, len(id.Claims))
		maps.Copy(claims, id.Claims)
		if err := c.mergeUserInfo(ctx, tok, claims); err != nil {
			return connectors.Identity{}, err
		}
	}
	nid, err := c.identity(ctx, tok, claims)
	if err != nil {
		return connectors.Identity{}, err
	}
	if nid.Subject != id.Subject {
		return connectors.Identity{}, userError(CodeInvalidToken, "The identity provider returned another account. Please sign in again.", fmt.Errorf("oidc: refresh subject %q, want %q", nid.Subject, id.Subject))
	}
	if nid.SessionID == "" {
		nid.SessionID = id.SessionID
	}
	if nid.ConnectorData, err = json.Marshal(connectorData{RefreshToken: tok.RefreshToken}); err != nil {
		return connectors.Identity{}, fmt.Errorf("oidc: encode connector data: %w", err)
	}
	return nid, nil
}

// verify checks tok's ID token and returns its claims merged with userinfo.
// nonce "" skips the nonce check (refresh responses carry none).
func (c *Connector) verify(ctx context.Context, tok *oauth2.Token, nonce string) (map[string]any, error) {
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return nil, userError(CodeInvalidResponse, "The identity provider sent no ID token.", fmt.Errorf("oidc: token response without id_token"))
	}
	// Verify the signature first with errors that keep their type (go-oidc
	// flattens key-set errors); go-oidc's verifier then checks the rest.
	payload, err := c.keys.VerifySignature(ctx, raw)
	if err != nil {
		return nil, signatureError(err)
	}
	idt, err := c.checkedVerify(ctx, raw, payload)
	if err != nil {
		return nil, verifyError(err)
	}
	if iat := idt.IssuedAt; !iat.IsZero() && iat.After(c.now().Add(issuedAtLeeway)) {
		return nil, userError(CodeInvalidToken, "The identity provider's answer failed verification.", fmt.Errorf("oidc: id token issued in the future (iat %s)", iat.UTC().Format(time.RFC3339)))
	}
	if azp, _ := idTokenClaim(idt, "azp"); len(idt.Audience) > 1 && azp != c.cfg.ClientID {
		return nil, userError(CodeInvalidToken, "The identity provider's answer failed verification.", fmt.Errorf("oidc: azp %q with several audiences, want %q", azp, c.cfg.ClientID))
	}
	if nonce != "" && subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(nonce)) != 1 {
		return nil, userError(CodeInvalidToken, "The identity provider's answer does not belong to this sign-in. Please start again.", fmt.Errorf("oidc: nonce mismatch"))
	}
	claims := map[string]any{}
	if err := idt.Claims(&claims); err != nil {
		return nil, userError(CodeInvalidToken, "The identity provider sent an unreadable ID token.", fmt.Errorf("oidc: id token claims: %w", err))
	}
	if c.cfg.UserInfo {
		if err := c.mergeUserInfo(ctx, tok, claims); err != nil {
			return nil, err
		}
	}
	return claims, nil
}

// checkedVerify runs go-oidc's ID token verifier (iss, aud, exp, nbf,
// algorithm) on raw, whose signature the caller verified with c.keys a
// moment before, giving payload: the verifier's key set answers for that
// one token with payload instead of verifying its signature a second time
// (an ECDSA verification is most of a sign-in's CPU), and refuses any
// other token.
func (c *Connector) checkedVerify(ctx context.Context, raw string, payload []byte) (*oidc.IDToken, error) {
	return oidc.NewVerifier(c.cfg.Issuer, checkedToken{raw: raw, payload: payload}, c.verifierConfig).Verify(ctx, raw)
}

// checkedToken is the oidc.KeySet of checkedVerify.
type checkedToken struct {
	raw     string
	payload []byte
}

func (k checkedToken) VerifySignature(_ context.Context, jwt string) ([]byte, error) {
	if jwt != k.raw {
		return nil, errors.New("oidc: token is not the one whose signature was verified")
	}
	return k.payload, nil
}

// issuedAtLeeway is how far in the future an ID token's iat may be: the
// clock skew go-oidc's verifier allows on nbf. go-oidc does not look at
// iat, so verify does.
const issuedAtLeeway = 5 * time.Minute

// idTokenWins are the claims userinfo may not override.
var idTokenWins = []string{"sub", "iss", "aud", "exp", "iat", "nbf", "nonce", "azp", "auth_time", "at_hash", "c_hash", "sid"}

// mergeUserInfo adds the userinfo response to claims. The userinfo sub must
// equal the ID token's (OpenID Connect Core 5.3.2).
func (c *Connector) mergeUserInfo(ctx context.Context, tok *oauth2.Token, claims map[string]any) error {
	ui, err := c.provider.UserInfo(oidc.ClientContext(ctx, c.client), oauth2.StaticTokenSource(tok))
	if err != nil {
		return userError(CodeUnavailable, "The identity provider could not be reached. Please try again later.", fmt.Errorf("oidc: userinfo: %w: %w", connectors.ErrUnavailable, err))
	}
	if sub, _ := claims["sub"].(string); sub != "" && ui.Subject != sub {
		return userError(CodeInvalidResponse, "The identity provider sent inconsistent answers.", fmt.Errorf("oidc: userinfo sub %q, id token sub %q", ui.Subject, sub))
	}
	var extra map[string]any
	if err := ui.Claims(&extra); err != nil {
		return userError(CodeInvalidResponse, "The identity provider sent an unreadable answer.", fmt.Errorf("oidc: userinfo claims: %w", err))
	}
	for k, v := range extra {
		if !slices.Contains(idTokenWins, k) {
			claims[k] = v
		}
	}
	return nil
}

// identity applies the email_verified rule and the extension hooks. The
// caller sets ConnectorData.
func (c *Connector) identity(ctx context.Context, tok *oauth2.Token, claims map[string]any) (connectors.Identity, error) {
	if _, hasEmail := claims["email"]; hasEmail && !c.cfg.InsecureSkipEmailVerified && !isTrue(claims["email_verified"]) {
		return connectors.Identity{}, userError(CodeEmailNotVerified, "Your email address is not verified at the identity provider.", fmt.Errorf("oidc: email_verified is %v", claims["email_verified"]))
	}
	if c.ext.CheckClaims != nil {
		if err := c.ext.CheckClaims(ctx, claims); err != nil {
			return connectors.Identity{}, err
		}
	}
	sub, _ := claims["sub"].(string)
	if c.ext.Subject != nil {
		var err error
		if sub, err = c.ext.Subject(claims); err != nil {
			return connectors.Identity{}, err
		}
	}
	if sub == "" {
		return connectors.Identity{}, userError(CodeInvalidToken, "The identity provider did not say who you are.", fmt.Errorf("oidc: empty subject"))
	}
	id := connectors.Identity{Subject: sub, Claims: claims, SessionID: sessionID(claims)}
	if c.ext.Enrich != nil {
		if err := c.ext.Enrich(ctx, tok, &id); err != nil {
			return connectors.Identity{}, err
		}
	}
	return id, nil
}

// idTokenClaim returns a string claim of idt.
func idTokenClaim(idt *oidc.IDToken, name string) (string, bool) {
	var m map[string]any
	if idt.Claims(&m) != nil {
		return "", false
	}
	v, ok := m[name].(string)
	return v, ok
}

// isTrue accepts true and "true" (some upstreams send strings).
func isTrue(v any) bool {
	switch v := v.(type) {
	case bool:
		return v
	case string:
		return v == "true"
	}
	return false
}

func randomString() string {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("oidc: crypto/rand: %v", err))
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// CheckHealth reports whether the upstream answers: it fetches the upstream's
// JWKS (named by its discovery document) and expects 200. It does not
// change the connector's cached keys.
func (c *Connector) CheckHealth(ctx context.Context) error {
	var meta struct {
		JWKSURI string `json:"jwks_uri"`
	}
	if err := c.provider.Claims(&meta); err != nil || meta.JWKSURI == "" {
		return fmt.Errorf("oidc: %s: discovery has no jwks_uri", c.id)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, meta.JWKSURI, nil)
	if err != nil {
		return fmt.Errorf("oidc: %s: %w", c.id, err)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return fmt.Errorf("oidc: %s: upstream unreachable: %w", c.id, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("oidc: %s: upstream keys answered %s", c.id, resp.Status)
	}
	return nil
}

// unreachable reports whether a discovery error means the upstream could not
// be reached or answered with a server error (as opposed to answering with
// something wrong, such as another issuer).
func unreachable(err error) bool {
	var uerr *url.Error
	if errors.As(err, &uerr) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	msg := err.Error()
	return len(msg) > 3 && msg[0] == '5' && msg[3] == ' '
}
