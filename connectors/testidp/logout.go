package testidp

import (
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// BackchannelLogoutEvent is the member of a logout token's events claim
// (OpenID Connect Back-Channel Logout 1.0 §2.4).
const BackchannelLogoutEvent = "http://schemas.openid.net/event/backchannel-logout"

// SetEndSession makes discovery advertise an end_session_endpoint
// (RP-Initiated Logout 1.0) and back-channel logout support. The endpoint
// records its parameters (LastEndSession) and sends the browser to the
// post_logout_redirect_uri with the state.
func (p *IdP) SetEndSession(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.endSession = on
}

// LastEndSession returns the parameters of the last end_session request.
func (p *IdP) LastEndSession() url.Values {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lastEndSession
}

func (p *IdP) endSessionHandler(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	p.mu.Lock()
	on := p.endSession
	p.lastEndSession = q
	p.mu.Unlock()
	if !on {
		http.NotFound(w, r)
		return
	}
	target := q.Get("post_logout_redirect_uri")
	if target == "" {
		fmt.Fprintln(w, "signed out")
		return
	}
	u, err := url.Parse(target)
	if err != nil {
		http.Error(w, "bad post_logout_redirect_uri", http.StatusBadRequest)
		return
	}
	if st := q.Get("state"); st != "" {
		v := u.Query()
		v.Set("state", st)
		u.RawQuery = v.Encode()
	}
	http.Redirect(w, r, u.String(), http.StatusFound)
}

// SignLogoutToken signs a logout token with the IdP's current key: iss,
// aud (the client id), iat, exp (+2 min), a random jti and the
// back-channel logout event, then claims on top (a nil value removes a
// claim). typ is the JWS typ header ("" leaves it out).
func (p *IdP) SignLogoutToken(claims map[string]any, typ string) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.opts.Now()
	c := map[string]any{
		"iss":    p.issuer,
		"aud":    p.opts.ClientID,
		"iat":    now.Unix(),
		"exp":    now.Add(2 * time.Minute).Unix(),
		"jti":    randString(16),
		"events": map[string]any{BackchannelLogoutEvent: map[string]any{}},
	}
	for k, v := range claims {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	k := p.keys[0]
	opts := (&jose.SignerOptions{}).WithHeader(jose.HeaderKey("kid"), k.kid)
	if typ != "" {
		opts = opts.WithType(jose.ContentType(typ))
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: k.alg, Key: k.key}, opts)
	if err != nil {
		return "", fmt.Errorf("testidp: signer: %w", err)
	}
	return jwt.Signed(signer).Claims(c).Serialize()
}

// SetRefreshIDToken(false) makes refresh responses carry no id_token (OIDC
// Core §12.2 makes it optional), as Entra ID and others do.
func (p *IdP) SetRefreshIDToken(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.noRefreshIDToken = !on
}
