package authflow

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/fedbroker/fedbroker/broker/clientauth"
	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/oauth"
	"github.com/fedbroker/fedbroker/broker/runtime/runtimetest"
	"github.com/fedbroker/fedbroker/broker/storage"
)

const svcCallback = "https://svc.example.com/callback"

type parFixture struct {
	authzFixture
	par *PAR
}

func newPARFixture(t *testing.T, settings config.PAR) parFixture {
	t.Helper()
	f := newAuthzFixture(t)
	a := clientauth.New(clientauth.Deps{Issuer: runtimetest.Issuer, Replay: f.Store, Now: f.Clock.Now})
	return parFixture{f, NewPAR(f.flow, a, settings)}
}

// push pushes form as a public client (or with the basic credentials
// user:pass when user is set) from address 192.0.2.1.
func (f parFixture) push(form url.Values, user, pass string) (Pushed, error) {
	req := clientauth.Request{Form: form, RemoteIP: "192.0.2.1"}
	if user != "" {
		req.BasicUser, req.BasicPassword, req.HasBasic = user, pass, true
	}
	return f.par.Push(context.Background(), f.Runtime, req)
}

// svcAuthorize is a request svc, a confidential client, may push.
func svcAuthorize(extra ...string) url.Values {
	v := validAuthorize(extra...)
	v.Set("client_id", "svc")
	v.Set("redirect_uri", svcCallback)
	return v
}

func wantOAuthError(t *testing.T, err error, status int, code string) {
	t.Helper()
	oe, ok := errors.AsType[*oauth.Error](err)
	if !ok || oe.Status != status || oe.Code != code {
		t.Fatalf("error = %v (%T); want %d %s", err, err, status, code)
	}
	for _, r := range oe.Description {
		if r == '"' || r == '\\' || r < 0x20 || r > 0x7e {
			t.Fatalf("error_description %q has a character RFC 6749 §5.2 forbids", oe.Description)
		}
	}
}

func wantRequestURIPage(t *testing.T, err error) {
	t.Helper()
	pe := wantPageError(t, err, http.StatusBadRequest)
	if pe.Code != "invalid_request_uri" {
		t.Fatalf("page code = %q, want invalid_request_uri", pe.Code)
	}
}

// handleOf is the handle of a request_uri the endpoint issued.
func handleOf(t *testing.T, p Pushed) string {
	t.Helper()
	h, ok := strings.CutPrefix(p.RequestURI, RequestURIPrefix)
	if !ok || len(h) != parHandleLen {
		t.Fatalf("request_uri = %q; want %s and a %d-character handle", p.RequestURI, RequestURIPrefix, parHandleLen)
	}
	return h
}

// A pushed request is stored hashed, briefly, without the client's
// credentials and bound to no browser; /authorize then answers the pushed
// parameters, whatever else the browser brings.
func TestPushThenAuthorize(t *testing.T) {
	f := newPARFixture(t, config.PAR{})
	ctx := context.Background()
	form := svcAuthorize("state", "pushed-state", "nonce", "pushed-nonce", "unknown_param", "dropped")
	form.Set("client_secret", runtimetest.SvcSecret)
	p, err := f.push(form, "", "")
	if err != nil {
		t.Fatalf("Push: %v", err)
	}
	if p.ExpiresIn != 60 {
		t.Errorf("expires_in = %d, want 60 (the default)", p.ExpiresIn)
	}
	handle := handleOf(t, p)
	if _, err := f.Store.GetAuthRequest(ctx, handle); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("the clear handle is a storage key: %v", err)
	}
	rec, err := f.Store.GetAuthRequest(ctx, storage.PushedRequestID(handle))
	if err != nil {
		t.Fatalf("pushed record: %v", err)
	}
	if rec.ClientID != "svc" || rec.BrowserBinding != "" || !rec.Expiry.Equal(f.Clock.Now().Add(time.Minute)) {
		t.Errorf("pushed record = %+v", rec)
	}
	for _, k := range []string{"client_secret", "unknown_param"} {
		if _, ok := rec.Pushed[k]; ok {
			t.Errorf("pushed record keeps %s", k)
		}
	}
	// The pushed record is no sign-in of its own: the login steps refuse it.
	if _, err := f.flow.StartLogin(ctx, f.Runtime, "local", rec.ID, Browser{BrowserID: strings.Repeat("b", 32)}); !errors.Is(err, errOtherBrowser) {
		t.Errorf("StartLogin with the pushed record's id = %v, want errOtherBrowser", err)
	}

	// Only client_id and request_uri count at /authorize.
	browserParams := url.Values{"client_id": {"svc"}, "request_uri": {p.RequestURI}, "redirect_uri": {"https://evil.example/cb"}, "state": {"browser-state"}, "scope": {"openid read"}, "prompt": {"none"}}
	res, err := f.par.Authorize(ctx, f.Runtime, browserParams, Browser{RemoteIP: "192.0.2.1"})
	if err != nil {
		t.Fatalf("Authorize with request_uri: %v", err)
	}
	req := f.storedRequest(t, res)
	if req.ClientID != "svc" || req.RedirectURI != svcCallback || req.State != "pushed-state" || req.Nonce != "pushed-nonce" ||
		req.CodeChallenge != validChallenge || strings.Join(req.Scopes, " ") != "openid email" || req.Prompt != "" || req.BrowserBinding == "" {
		t.Errorf("auth request = %+v; want the pushed parameters, bound to the browser", req)
	}
	if _, err := f.Store.GetAuthRequest(ctx, rec.ID); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("pushed record after use: %v, want it gone", err)
	}
	// Used once.
	_, err = f.par.Authorize(ctx, f.Runtime, browserParams, Browser{RemoteIP: "192.0.2.1"})
	wantRequestURIPage(t, err)
}

// Every kind of client authenticates as at the token endpoint; a
// confidential client that does not is refused with invalid_client.
func TestPushAuthenticatesTheClient(t *testing.T) {
	f := newPARFixture(t, config.PAR{})
	if _, err := f.push(svcAuthorize(), "svc", runtimetest.SvcSecret); err != nil {
		t.Fatalf("Push with basic credentials: %v", err)
	}
	noID := svcAuthorize()
	noID.Del("client_id")
	if _, err := f.push(noID, "svc", runtimetest.SvcSecret); err != nil {
		t.Fatalf("Push with basic credentials and no client_id: %v", err)
	}
	if _, err := f.push(validAuthorize(), "", ""); err != nil {
		t.Fatalf("Push as a public client: %v", err)
	}
	for name, tc := range map[string]struct {
		form       url.Values
		user, pass string
	}{
		"no credentials":         {svcAuthorize(), "", ""},
		"wrong secret":           {svcAuthorize(), "svc", "wrong"},
		"unknown client":         {validAuthorize("client_id", "nobody"), "", ""},
		"no client at all":       {func() url.Values { v := validAuthorize(); v.Del("client_id"); return v }(), "", ""},
		"another client's id":    {validAuthorize(), "svc", runtimetest.SvcSecret},
		"public client + secret": {validAuthorize(), "app", "anything"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := f.push(tc.form, tc.user, tc.pass)
			wantOAuthError(t, err, http.StatusUnauthorized, oauth.ErrInvalidClient)
		})
	}
}

// A pushed request is checked as /authorize checks one, and refused with
// the error /authorize would show or send back (RFC 9126 §2.3).
func TestPushValidatesLikeAuthorize(t *testing.T) {
	f := newPARFixture(t, config.PAR{})
	repeated := validAuthorize()
	repeated.Add("scope", "openid")
	for _, tc := range []struct {
		name string
		form url.Values
		code string
	}{
		{"request_uri", validAuthorize("request_uri", RequestURIPrefix+strings.Repeat("A", parHandleLen)), oauth.ErrInvalidRequest},
		{"empty request_uri", validAuthorize("request_uri", ""), oauth.ErrInvalidRequest},
		{"unregistered redirect_uri", validAuthorize("redirect_uri", "https://evil.example/cb"), oauth.ErrInvalidRequest},
		{"no redirect_uri", validAuthorize("redirect_uri", ""), oauth.ErrInvalidRequest},
		{"unknown scope", validAuthorize("scope", "openid admin"), oauth.ErrInvalidScope},
		{"scope with a quote", validAuthorize("scope", `openid "x\y`), oauth.ErrInvalidScope},
		{"no openid", validAuthorize("scope", "email"), oauth.ErrInvalidScope},
		{"no PKCE", validAuthorize("code_challenge", "", "code_challenge_method", ""), oauth.ErrInvalidRequest},
		{"plain PKCE", validAuthorize("code_challenge_method", "plain"), oauth.ErrInvalidRequest},
		{"bad challenge", validAuthorize("code_challenge", "short"), oauth.ErrInvalidRequest},
		{"implicit", validAuthorize("response_type", "token"), oauth.ErrUnsupportedResponseType},
		{"request object", validAuthorize("request", "eyJhbGciOiJub25lIn0.e30."), oauth.ErrRequestNotSupported},
		{"fragment mode", validAuthorize("response_mode", "fragment"), oauth.ErrInvalidRequest},
		{"prompt none and login", validAuthorize("prompt", "none login"), oauth.ErrInvalidRequest},
		{"bad max_age", validAuthorize("max_age", "-1"), oauth.ErrInvalidRequest},
		{"state not VSCHAR", validAuthorize("state", "a\nb"), oauth.ErrInvalidRequest},
		{"unknown connector", validAuthorize("connector_id", "nope"), oauth.ErrInvalidRequest},
		{"repeated scope", repeated, oauth.ErrInvalidRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.push(tc.form, "", "")
			wantOAuthError(t, err, http.StatusBadRequest, tc.code)
		})
	}
	if _, err := f.push(svcAuthorize("grant_type", "x"), "svc", runtimetest.SvcSecret); err != nil {
		t.Errorf("a confidential client may push without PKCE: %v", err)
	}
}

// A request_uri is refused with a page, never a redirect, when it is not
// one the broker issued, has expired, or was pushed by another client;
// the client that pushed it can still use it after another one tried.
func TestAuthorizeRefusesBadRequestURIs(t *testing.T) {
	f := newPARFixture(t, config.PAR{})
	ctx := context.Background()
	p, err := f.push(validAuthorize(), "", "")
	if err != nil {
		t.Fatal(err)
	}
	handle := handleOf(t, p)
	b := Browser{RemoteIP: "192.0.2.1"}
	for name, form := range map[string]url.Values{
		"forged handle":     {"client_id": {"app"}, "request_uri": {RequestURIPrefix + oauth.RandomToken(parHandleBytes)}},
		"another prefix":    {"client_id": {"app"}, "request_uri": {"https://evil.example/req/" + handle}},
		"the stored id":     {"client_id": {"app"}, "request_uri": {RequestURIPrefix + storage.PushedRequestID(handle)}},
		"hashed handle":     {"client_id": {"app"}, "request_uri": {RequestURIPrefix + storage.Hash(handle)}},
		"handle too long":   {"client_id": {"app"}, "request_uri": {p.RequestURI + "A"}},
		"handle cut short":  {"client_id": {"app"}, "request_uri": {p.RequestURI[:len(p.RequestURI)-1]}},
		"another client":    {"client_id": {"svc"}, "request_uri": {p.RequestURI}},
		"repeated":          {"client_id": {"app"}, "request_uri": {p.RequestURI, p.RequestURI}},
		"no client":         {"request_uri": {p.RequestURI}},
		"unknown client":    {"client_id": {"nobody"}, "request_uri": {p.RequestURI}},
		"repeated clientid": {"client_id": {"app", "app"}, "request_uri": {p.RequestURI}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := f.par.Authorize(ctx, f.Runtime, form, b)
			if name == "another client" {
				wantRequestURIPage(t, err)
				return
			}
			wantPageError(t, err, http.StatusBadRequest)
		})
	}
	if _, err := f.par.Authorize(ctx, f.Runtime, url.Values{"client_id": {"app"}, "request_uri": {p.RequestURI}}, b); err != nil {
		t.Fatalf("Authorize by the pushing client after the refusals: %v", err)
	}

	// Expired: the lifetime is the configured one, to the second.
	f.par.Configure(config.PAR{RequestLifetime: new(5 * time.Second)})
	p, err = f.push(validAuthorize(), "", "")
	if err != nil || p.ExpiresIn != 5 {
		t.Fatalf("Push = %+v, %v; want expires_in 5", p, err)
	}
	f.Clock.Advance(5 * time.Second)
	_, err = f.par.Authorize(ctx, f.Runtime, url.Values{"client_id": {"app"}, "request_uri": {p.RequestURI}}, b)
	wantRequestURIPage(t, err)
}

// Required pushed requests, server-wide or for one client: a request
// without request_uri is refused with invalid_request at the client's
// redirect_uri, or with a page when that is not registered; pushed ones go
// through.
func TestAuthorizeRequiresPushedRequests(t *testing.T) {
	ctx := context.Background()
	b := Browser{RemoteIP: "192.0.2.1"}
	check := func(t *testing.T, f parFixture, required, notRequired url.Values) {
		t.Helper()
		_, err := f.par.Authorize(ctx, f.Runtime, required, b)
		re, ok := errors.AsType[*oauth.RedirectError](err)
		if !ok || re.Code != oauth.ErrInvalidRequest || re.RedirectURI != required.Get("redirect_uri") || re.State != required.Get("state") {
			t.Fatalf("Authorize without request_uri = %v; want invalid_request at the redirect_uri with the state", err)
		}
		bad := url.Values{}
		for k, v := range required {
			bad[k] = v
		}
		bad.Set("redirect_uri", "https://evil.example/cb")
		_, err = f.par.Authorize(ctx, f.Runtime, bad, b)
		wantPageError(t, err, http.StatusBadRequest)
		// An invalid request is refused for being not pushed all the
		// same, at its redirect_uri.
		bad.Set("redirect_uri", required.Get("redirect_uri"))
		bad.Set("scope", "openid admin")
		_, err = f.par.Authorize(ctx, f.Runtime, bad, b)
		if re, ok := errors.AsType[*oauth.RedirectError](err); !ok || re.Code != oauth.ErrInvalidRequest {
			t.Fatalf("Authorize with a bad scope, not pushed = %v; want invalid_request", err)
		}
		if notRequired != nil {
			if _, err := f.par.Authorize(ctx, f.Runtime, notRequired, b); err != nil {
				t.Fatalf("Authorize by a client not required to push: %v", err)
			}
		}
		user, pass := "", ""
		if required.Get("client_id") == "svc" {
			user, pass = "svc", runtimetest.SvcSecret
		}
		p, err := f.push(required, user, pass)
		if err != nil {
			t.Fatalf("Push: %v", err)
		}
		if _, err := f.par.Authorize(ctx, f.Runtime, url.Values{"client_id": {required.Get("client_id")}, "request_uri": {p.RequestURI}}, b); err != nil {
			t.Fatalf("Authorize with request_uri: %v", err)
		}
	}
	t.Run("server-wide", func(t *testing.T) {
		check(t, newPARFixture(t, config.PAR{Require: true}), validAuthorize(), nil)
	})
	t.Run("one client", func(t *testing.T) {
		// The same Flow over a configuration where svc must push: the
		// runtime is passed to each call, the store is swapped for the
		// new fixture's.
		f := newPARFixture(t, config.PAR{})
		f.Fixture = runtimetest.New(t, "", func(c *config.Config) {
			for i := range c.Clients {
				c.Clients[i].RequirePushedAuthorizationRequests = c.Clients[i].ID == "svc"
			}
		})
		f.flow.store = f.Store
		check(t, f, svcAuthorize(), validAuthorize())
	})
}

// Anyone may push as a public client, so each address may keep only so
// many pushed requests, as at /authorize; a confidential client is not
// limited by its address.
func TestPushLimitsPublicClientsPerAddress(t *testing.T) {
	f := newPARFixture(t, config.PAR{})
	for i := range 60 {
		if _, err := f.push(validAuthorize(), "", ""); err != nil {
			t.Fatalf("Push %d: %v", i+1, err)
		}
	}
	_, err := f.push(validAuthorize(), "", "")
	wantOAuthError(t, err, http.StatusTooManyRequests, oauth.ErrInvalidRequest)
	for i := range 100 {
		if _, err := f.push(svcAuthorize(), "svc", runtimetest.SvcSecret); err != nil {
			t.Fatalf("confidential Push %d: %v", i+1, err)
		}
	}
}

// A pushed request is checked again when it is used: a redirect_uri
// removed from the configuration meanwhile is not trusted.
func TestAuthorizeChecksPushedRequestsAgain(t *testing.T) {
	f := newPARFixture(t, config.PAR{})
	p, err := f.push(validAuthorize(), "", "")
	if err != nil {
		t.Fatal(err)
	}
	reloaded := runtimetest.New(t, "", func(c *config.Config) {
		c.Clients[0].RedirectURIs = []string{"http://127.0.0.1:9999/other"}
	})
	_, err = f.par.Authorize(context.Background(), reloaded.Runtime, url.Values{"client_id": {"app"}, "request_uri": {p.RequestURI}}, Browser{RemoteIP: "192.0.2.1"})
	wantPageError(t, err, http.StatusBadRequest)
}
