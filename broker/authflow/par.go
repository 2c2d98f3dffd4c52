package authflow

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/fedbroker/fedbroker/broker/clientauth"
	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/oauth"
	"github.com/fedbroker/fedbroker/broker/runtime"
	"github.com/fedbroker/fedbroker/broker/storage"
)

// Pushed authorization requests (RFC 9126). A client posts the parameters
// of an authorization request to the PAR endpoint, authenticated as at the
// token endpoint; they are checked as /authorize checks them and stored,
// as an auth request record under storage.PushedRequestID, for a short
// while. The browser then brings only client_id and the request_uri to
// /authorize, which takes the pushed parameters once and answers them as
// any other authorization request, checked again against the
// configuration of that moment.

// RequestURIPrefix begins every request_uri the PAR endpoint issues (RFC
// 9126 §2.2); a random handle follows it.
const RequestURIPrefix = "urn:ietf:params:oauth:request_uri:"

// parHandleBytes is the entropy of a request_uri's handle: 256 bits,
// base64url encoded in parHandleLen characters.
const (
	parHandleBytes = 32
	parHandleLen   = 43
)

// pushedParams are the parameters a pushed request keeps: those the
// authorization endpoint reads (request only to be refused). Client
// authentication is never stored.
var pushedParams = append(slices.Clone(authorizeParams), "response_mode", "request")

// errBadRequestURI is the page for a request_uri that is unknown, expired,
// already used or not one of ours: none of them says where the client
// wants the browser back, so no redirect is trusted.
var errBadRequestURI = &oauth.PageError{Status: http.StatusBadRequest, Heading: "This sign-in request cannot be completed", Message: "The sign-in request has expired or was already used. Go back to the application and start again.", Code: "invalid_request_uri"}

// errOtherClientsRequestURI is the page for a request_uri pushed by
// another client than the one named with it.
var errOtherClientsRequestURI = &oauth.PageError{Status: http.StatusBadRequest, Heading: "This sign-in request cannot be completed", Message: "The sign-in request was not made by the application that sent you here. Go back to the application and start again.", Code: "invalid_request_uri"}

// PAR is the pushed authorization request endpoint and the authorization
// endpoint in front of Flow.Authorize: it answers request_uri and enforces
// the requirement to push (server-wide or per client).
type PAR struct {
	flow     *Flow
	clients  *clientauth.Authenticator
	settings atomic.Pointer[config.PAR]
}

// NewPAR returns the PAR endpoint of flow f, authenticating clients with
// clients, configured by settings (the par section).
func NewPAR(f *Flow, clients *clientauth.Authenticator, settings config.PAR) *PAR {
	p := &PAR{flow: f, clients: clients}
	p.Configure(settings)
	return p
}

// Configure applies the par section of a reloaded configuration.
func (p *PAR) Configure(settings config.PAR) { p.settings.Store(&settings) }

// Settings returns the par section in effect.
func (p *PAR) Settings() config.PAR { return *p.settings.Load() }

// Pushed is the PAR endpoint's answer (RFC 9126 §2.2).
type Pushed struct {
	RequestURI string `json:"request_uri"`
	ExpiresIn  int64  `json:"expires_in"`
}

// Push serves a pushed authorization request (RFC 9126 §2.1): the client
// is authenticated as at the token endpoint, the request must not carry a
// request_uri, and it is checked as the authorization endpoint checks a
// request before it is stored. Every refusal is an *oauth.Error (401
// invalid_client for authentication, 400 otherwise, 429 when a public
// client's address pushed too many), except a storage failure.
func (p *PAR) Push(ctx context.Context, rt *runtime.Runtime, creq clientauth.Request) (Pushed, error) {
	cl, err := p.clients.Authenticate(ctx, rt, creq)
	if err != nil {
		return Pushed{}, err
	}
	form := creq.Form
	if _, ok := form["request_uri"]; ok {
		return Pushed{}, oauth.InvalidRequest("request_uri must not be pushed")
	}
	params := url.Values{}
	for _, k := range pushedParams {
		if vs, ok := form[k]; ok {
			params[k] = slices.Clone(vs)
		}
	}
	// The authenticated client is the request's: clientauth refuses a
	// client_id naming another, and one left out is filled in.
	if _, ok := params["client_id"]; !ok {
		params.Set("client_id", cl.ID)
	} else if params.Get("client_id") != cl.ID {
		return Pushed{}, oauth.InvalidRequest("client_id does not name the authenticated client")
	}
	v, err := p.flow.validateAuthorize(rt, params)
	if err != nil {
		return Pushed{}, pushError(err)
	}
	// Anyone may push as a public client: like /authorize, each address
	// may keep only so many requests pending. A confidential client's
	// backend pushes for all its users from one address and is not
	// limited by it.
	if cl.Public {
		addr := creq.RemoteIP
		if addr == "" {
			addr = unknownAddr
		}
		if !p.flow.pending.take(addr) {
			p.flow.audit.Event("authorize_throttled", "client_id", cl.ID, "remote", addr, "endpoint", "par")
			return Pushed{}, oauth.NewError(http.StatusTooManyRequests, oauth.ErrInvalidRequest, "too many pushed requests from this address: try again in a few seconds")
		}
	}
	lifetime := p.Settings().Lifetime()
	handle := oauth.RandomToken(parHandleBytes)
	rec := storage.AuthRequest{
		ID:          storage.PushedRequestID(handle),
		ClientID:    cl.ID,
		RedirectURI: v.req.RedirectURI,
		Scopes:      v.req.Scopes,
		MaxAge:      -1,
		Pushed:      params,
		Expiry:      p.flow.now().Add(lifetime),
	}
	if err := p.flow.store.CreateAuthRequest(ctx, rec); err != nil {
		return Pushed{}, err
	}
	p.flow.audit.Event("authorize_pushed", "client_id", cl.ID)
	return Pushed{RequestURI: RequestURIPrefix + handle, ExpiresIn: int64(lifetime / time.Second)}, nil
}

// pushError turns a refusal of validateAuthorize into the PAR endpoint's
// JSON error (RFC 9126 §2.3): what /authorize shows on a page or sends
// back to the redirect_uri, the client gets in the response.
func pushError(err error) error {
	if pe, ok := errors.AsType[*oauth.PageError](err); ok {
		if pe.Code == oauth.ErrInvalidClient {
			return oauth.InvalidClient("%s", errorDescription(pe.Message))
		}
		return oauth.NewError(http.StatusBadRequest, pe.Code, "%s", errorDescription(pe.Message))
	}
	if re, ok := errors.AsType[*oauth.RedirectError](err); ok {
		return oauth.NewError(http.StatusBadRequest, re.Code, "%s", errorDescription(re.Description))
	}
	return err
}

// errorDescription keeps s within the characters error_description may
// hold (RFC 6749 §5.2: printable ASCII but the double quote and the
// backslash): some descriptions quote a scope the client sent.
func errorDescription(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '"':
			return '\''
		case r == '\\' || r < 0x20 || r > 0x7e:
			return '?'
		}
		return r
	}, s)
}

// Authorize is the authorization endpoint (Flow.Authorize) with pushed
// requests. A request with a request_uri is answered with the parameters
// pushed under it, taken once; every other parameter but client_id is
// ignored (RFC 9126 §4). Any other request is refused with
// invalid_request when the server or its client requires pushed requests.
func (p *PAR) Authorize(ctx context.Context, rt *runtime.Runtime, form url.Values, b Browser) (Result, error) {
	if form.Get("request_uri") == "" {
		if err := p.checkNotRequired(rt, form); err != nil {
			return Result{}, err
		}
		return p.flow.Authorize(ctx, rt, form, b)
	}
	params, err := p.take(ctx, rt, form)
	if err != nil {
		return Result{}, err
	}
	return p.flow.Authorize(ctx, rt, params, b)
}

// checkNotRequired refuses a request that was not pushed when the server
// or its client requires pushed requests (RFC 9126 §4). Where the refusal
// goes is decided as for any other error: a page until the client and its
// redirect_uri are known, a redirect with invalid_request after.
func (p *PAR) checkNotRequired(rt *runtime.Runtime, form url.Values) error {
	cl, ok := rt.Client(form.Get("client_id"))
	if !ok || (!p.Settings().Require && !cl.RequirePushedAuthorizationRequests) {
		return nil // an unknown client gets Authorize's page
	}
	v, err := p.flow.validateAuthorize(rt, form)
	redirectURI, state := v.req.RedirectURI, v.req.State
	if err != nil {
		re, ok := errors.AsType[*oauth.RedirectError](err)
		if !ok {
			return err
		}
		redirectURI, state = re.RedirectURI, re.State
	}
	p.flow.audit.Event("authorize_rejected", "client_id", cl.ID, "reason", "authorization request not pushed")
	return &oauth.RedirectError{RedirectURI: redirectURI, State: state, Code: oauth.ErrInvalidRequest, Description: "authorization requests must be pushed to the pushed_authorization_request_endpoint first"}
}

// take returns the parameters pushed under form's request_uri, for
// form's client, and deletes them: a request_uri is used once. Every
// refusal is a page, since nothing in form says where the browser may be
// sent back.
func (p *PAR) take(ctx context.Context, rt *runtime.Runtime, form url.Values) (url.Values, error) {
	for _, k := range []string{"client_id", "request_uri"} {
		if len(form[k]) > 1 {
			return nil, oauth.BadRequestPage(oauth.ErrInvalidRequest, "The sign-in request repeats the parameter "+k+".")
		}
	}
	clientID := form.Get("client_id")
	cl, ok := rt.Client(clientID)
	if !ok || len(clientID) > maxClientIDLen {
		p.flow.audit.Event("authorize_rejected", "reason", "unknown client")
		return nil, oauth.BadRequestPage(oauth.ErrInvalidClient, "The application that sent you here is not registered with this sign-in service.")
	}
	handle, ok := strings.CutPrefix(form.Get("request_uri"), RequestURIPrefix)
	if !ok || len(handle) != parHandleLen {
		p.flow.audit.Event("authorize_rejected", "client_id", cl.ID, "reason", "request_uri not issued here")
		return nil, errBadRequestURI
	}
	id := storage.PushedRequestID(handle)
	rec, err := p.flow.store.GetAuthRequest(ctx, id)
	if err != nil {
		if isNotFound(err) {
			p.flow.audit.Event("authorize_rejected", "client_id", cl.ID, "reason", "request_uri unknown, expired or used")
			return nil, errBadRequestURI
		}
		return nil, err
	}
	if rec.Pushed == nil || !rec.Expiry.After(p.flow.now()) {
		p.flow.audit.Event("authorize_rejected", "client_id", cl.ID, "reason", "request_uri unknown, expired or used")
		return nil, errBadRequestURI
	}
	// Checked before taking it, so that another client naming it cannot
	// spend it.
	if rec.ClientID != cl.ID || url.Values(rec.Pushed).Get("client_id") != cl.ID {
		p.flow.audit.Event("authorize_rejected", "client_id", cl.ID, "reason", "request_uri pushed by another client")
		return nil, errOtherClientsRequestURI
	}
	if _, err := p.flow.store.TakeAuthRequest(ctx, id); err != nil {
		if isNotFound(err) {
			// Taken meanwhile, by a concurrent request with the same
			// request_uri.
			p.flow.audit.Event("authorize_rejected", "client_id", cl.ID, "reason", "request_uri unknown, expired or used")
			return nil, errBadRequestURI
		}
		return nil, err
	}
	return url.Values(rec.Pushed), nil
}
