package testidp

import (
	"crypto"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/fedbroker/fedbroker/jwa"
)

// AssertionType is the client_assertion_type of RFC 7523 §2.2.
const AssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// maxAssertionAhead is how far in the future a client assertion's exp may
// be: a strict provider refuses long-lived assertions.
const maxAssertionAhead = 10 * time.Minute

// ClientAuth is how /token authenticates the registered client. The zero
// value is the default: the client secret, with HTTP Basic or in the form.
type ClientAuth struct {
	// Keys registers the client for private_key_jwt (RFC 7523, OpenID
	// Connect Core §9): /token then requires a client_assertion signed by
	// one of these public keys (chosen by kid when the assertion names one)
	// and refuses a client secret.
	Keys *jose.JSONWebKeySet
	// Certificates registers the client the way Entra ID does certificate
	// credentials: the assertion's x5t#S256 header must be the SHA-256
	// thumbprint of one of these certificates, whose key must verify it.
	Certificates []*x509.Certificate
	// Audiences are the values the assertion's aud must contain one of;
	// default the token endpoint URL.
	Audiences []string
	// Public registers a public client: /token refuses any client
	// authentication (secret or assertion) and wants client_id in the
	// form. PKCE is required at /authorize as always.
	Public bool
}

// Assertion is a client assertion /token accepted.
type Assertion struct {
	Header map[string]any // the JOSE header
	Claims map[string]any
}

// SetClientAuth changes how /token authenticates the client; the zero
// ClientAuth restores the client secret.
func (p *IdP) SetClientAuth(ca ClientAuth) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clientAuth = ca
}

// TokenURL is the token endpoint's URL.
func (p *IdP) TokenURL() string { return p.srv.URL + "/token" }

// Assertions returns the client assertions /token accepted, oldest first.
func (p *IdP) Assertions() []Assertion {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.assertions)
}

// authenticateClient checks the client authentication of the token
// request r (its form parsed) and returns "" or why it failed.
func (p *IdP) authenticateClient(r *http.Request) string {
	p.mu.Lock()
	ca := p.clientAuth
	p.mu.Unlock()
	_, _, basic := r.BasicAuth()
	form := r.PostForm
	hasSecret := basic || form.Has("client_secret")
	hasAssertion := form.Has("client_assertion") || form.Has("client_assertion_type")
	switch {
	case ca.Public:
		if hasSecret || hasAssertion {
			return "public client must not authenticate"
		}
		if form.Get("client_id") != p.opts.ClientID {
			return "unknown client_id"
		}
		return ""
	case ca.Keys != nil || len(ca.Certificates) > 0:
		if hasSecret {
			return "client registered for private_key_jwt sent a secret"
		}
		if id := form.Get("client_id"); id != "" && id != p.opts.ClientID {
			return "client_id does not match the assertion"
		}
		if form.Get("client_assertion_type") != AssertionType {
			return "client_assertion_type must be " + AssertionType
		}
		return p.checkAssertion(ca, form.Get("client_assertion"))
	}
	id, secret, ok := r.BasicAuth()
	if ok {
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
	} else {
		id, secret = form.Get("client_id"), form.Get("client_secret")
	}
	if hasAssertion || id != p.opts.ClientID || subtle.ConstantTimeCompare([]byte(secret), []byte(p.opts.ClientSecret)) != 1 {
		return "bad client credentials"
	}
	return ""
}

// checkAssertion verifies a client assertion as a strict provider does:
// signature by a registered key, iss = sub = client_id, aud, exp (soon),
// iat, nbf and a jti never seen before.
func (p *IdP) checkAssertion(ca ClientAuth, raw string) string {
	tok, err := jwt.ParseSigned(raw, jwa.Asymmetric[jose.SignatureAlgorithm]())
	if err != nil || len(tok.Headers) != 1 {
		return "client_assertion is not a signed JWT with an accepted algorithm"
	}
	h := tok.Headers[0]
	var keys []crypto.PublicKey
	if len(ca.Certificates) > 0 {
		want, _ := h.ExtraHeaders["x5t#S256"].(string)
		for _, c := range ca.Certificates {
			sum := sha256.Sum256(c.Raw)
			if want != "" && want == base64.RawURLEncoding.EncodeToString(sum[:]) {
				keys = append(keys, c.PublicKey)
			}
		}
	} else {
		for _, k := range ca.Keys.Keys {
			if h.KeyID == "" || h.KeyID == k.KeyID {
				keys = append(keys, k.Key)
			}
		}
	}
	var claims map[string]any
	var std jwt.Claims
	verified := false
	for _, k := range keys {
		if tok.Claims(k, &std, &claims) == nil {
			verified = true
			break
		}
	}
	if !verified {
		return "client_assertion signature not verified by a registered key"
	}
	if std.Issuer != p.opts.ClientID || std.Subject != p.opts.ClientID {
		return "client_assertion iss and sub must be the client_id"
	}
	auds := ca.Audiences
	if len(auds) == 0 {
		auds = []string{p.TokenURL()}
	}
	if !slices.ContainsFunc(auds, std.Audience.Contains) {
		return fmt.Sprintf("client_assertion aud %v is not %v", []string(std.Audience), auds)
	}
	now := p.opts.Now()
	switch {
	case std.Expiry == nil:
		return "client_assertion has no exp"
	case !now.Before(std.Expiry.Time()):
		return "client_assertion expired"
	case std.Expiry.Time().After(now.Add(maxAssertionAhead)):
		return "client_assertion exp too far in the future"
	case std.IssuedAt != nil && std.IssuedAt.Time().After(now.Add(time.Minute)):
		return "client_assertion issued in the future"
	case std.NotBefore != nil && std.NotBefore.Time().After(now.Add(time.Minute)):
		return "client_assertion not yet valid"
	case std.ID == "":
		return "client_assertion has no jti"
	}
	header := map[string]any{}
	if seg, _, ok := strings.Cut(raw, "."); ok {
		if b, err := base64.RawURLEncoding.DecodeString(seg); err == nil {
			_ = json.Unmarshal(b, &header)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.jtis == nil {
		p.jtis = map[string]time.Time{}
	}
	for j, exp := range p.jtis {
		if now.After(exp.Add(maxAssertionAhead)) {
			delete(p.jtis, j)
		}
	}
	if _, seen := p.jtis[std.ID]; seen {
		return "client_assertion jti replayed"
	}
	p.jtis[std.ID] = std.Expiry.Time()
	p.assertions = append(p.assertions, Assertion{Header: header, Claims: claims})
	return ""
}
