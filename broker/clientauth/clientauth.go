// Package clientauth authenticates the client of a token, introspection or
// revocation request (RFC 6749 §2.3): client_secret_basic,
// client_secret_post, private_key_jwt (RFC 7523), or none for public
// clients. Exactly one method may be used per request.
package clientauth

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/fedbroker/fedbroker/broker/oauth"
	"github.com/fedbroker/fedbroker/broker/observe"
	"github.com/fedbroker/fedbroker/broker/runtime"
)

// Request is what client authentication reads from an HTTP request.
type Request struct {
	// Form is the request's parsed body.
	Form url.Values
	// Basic credentials from the Authorization header, as sent (still
	// form-urlencoded, RFC 6749 §2.3.1).
	BasicUser, BasicPassword string
	HasBasic                 bool
	// RemoteIP is the client's address, for the audit log.
	RemoteIP string
}

// FromRequest reads a Request from r, whose form must be parsed already.
func FromRequest(r *http.Request, remoteIP string) Request {
	user, pass, ok := r.BasicAuth()
	return Request{Form: r.PostForm, BasicUser: user, BasicPassword: pass, HasBasic: ok, RemoteIP: remoteIP}
}

// ReplayCache remembers assertion ids (jti) until they expire; the broker's
// storage implements it.
type ReplayCache interface {
	MarkSeen(ctx context.Context, namespace, id string, until time.Time) (bool, error)
}

// Authenticator authenticates clients against the current configuration.
type Authenticator struct {
	issuer string
	// tokenEndpoint and parEndpoint are the token endpoint's and the pushed
	// authorization request endpoint's URLs (RFC 9126 §2), as the broker
	// routes them and discovery publishes them.
	tokenEndpoint, parEndpoint string
	replay                     ReplayCache
	now                        func() time.Time
	audit                      observe.Audit
	secrets                    *secretCache
}

// Deps are an Authenticator's dependencies.
type Deps struct {
	// Issuer is the issuer URL, without a trailing slash: assertions must
	// name it, or its token endpoint (Issuer + "/token"), as their one
	// audience.
	Issuer string
	Replay ReplayCache
	Now    func() time.Time
	Audit  observe.Audit
}

// New returns an Authenticator.
func New(deps Deps) *Authenticator {
	if deps.Now == nil {
		deps.Now = time.Now
	}
	issuer := strings.TrimSuffix(deps.Issuer, "/")
	return &Authenticator{issuer: issuer, tokenEndpoint: issuer + "/token", parEndpoint: issuer + "/par", replay: deps.Replay, now: deps.Now, audit: deps.Audit, secrets: newSecretCache(deps.Now)}
}

// Authenticate identifies and authenticates the client of req. Every
// failure is an *oauth.Error (invalid_client, or invalid_request for a
// malformed request), except a storage failure while checking an
// assertion's jti, which is returned as is.
func (a *Authenticator) Authenticate(ctx context.Context, rt *runtime.Runtime, req Request) (*runtime.Client, error) {
	form := req.Form
	_, hasPostSecret := form["client_secret"]
	_, hasAssertion := form["client_assertion"]
	methods := 0
	for _, m := range []bool{req.HasBasic, hasPostSecret, hasAssertion} {
		if m {
			methods++
		}
	}
	if methods > 1 {
		return nil, oauth.InvalidClient("use exactly one client authentication method")
	}
	if hasAssertion {
		return a.assertion(ctx, rt, form)
	}
	if len(form["client_id"]) > 1 || len(form["client_secret"]) > 1 {
		return nil, oauth.InvalidRequest("repeated client credentials")
	}
	var id, secret string
	switch {
	case req.HasBasic:
		// RFC 6749 §2.3.1: both parts are form-urlencoded before encoding.
		var err1, err2 error
		id, err1 = url.QueryUnescape(req.BasicUser)
		secret, err2 = url.QueryUnescape(req.BasicPassword)
		if err1 != nil || err2 != nil {
			return nil, oauth.InvalidClient("malformed basic credentials")
		}
		if fid := form.Get("client_id"); fid != "" && fid != id {
			return nil, oauth.InvalidClient("client_id does not match the authenticated client")
		}
	case hasPostSecret:
		id, secret = form.Get("client_id"), form.Get("client_secret")
	default:
		id = form.Get("client_id")
	}
	if id == "" {
		return nil, oauth.InvalidClient("client authentication is required")
	}
	cl, ok := rt.Client(id)
	if !ok {
		return nil, oauth.InvalidClient("unknown client or wrong credentials")
	}
	if cl.Public {
		if req.HasBasic || hasPostSecret {
			return nil, oauth.InvalidClient("public clients have no secret")
		}
		return cl, nil
	}
	if !req.HasBasic && !hasPostSecret {
		return nil, oauth.InvalidClient("client authentication is required")
	}
	if cl.TokenEndpointAuthMethod == oauth.AuthPrivateKeyJWT {
		return nil, oauth.InvalidClient("this client authenticates with private_key_jwt")
	}
	if secret == "" || len(secret) > 512 || !a.secrets.verify(cl.ID, cl.SecretHash, secret) {
		a.audit.Event("client_auth_failed", "client_id", cl.ID, "remote", req.RemoteIP)
		return nil, oauth.InvalidClient("unknown client or wrong credentials")
	}
	return cl, nil
}
