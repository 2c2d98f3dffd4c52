package broker

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/fedbroker/fedbroker/broker/authflow"
	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/oauth"
	"github.com/fedbroker/fedbroker/connectors/workload/workloadtest"
)

// parResponse is a decoded /par answer, success or error.
type parResponse struct {
	status      int
	header      http.Header
	RequestURI  string `json:"request_uri"`
	ExpiresIn   int    `json:"expires_in"`
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

// parRaw sends a request to /par and decodes its JSON answer.
func (h *harness) parRaw(method, query, contentType, body, user, pass string) parResponse {
	h.t.Helper()
	req, err := http.NewRequest(method, h.issuer+"/par"+query, strings.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if user != "" {
		req.SetBasicAuth(url.QueryEscape(user), url.QueryEscape(pass))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatalf("%s /par: %v", method, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var pr parResponse
	if err := json.Unmarshal(raw, &pr); err != nil {
		h.t.Fatalf("%s /par = %d with non-JSON body %q", method, resp.StatusCode, raw)
	}
	pr.status, pr.header = resp.StatusCode, resp.Header
	return pr
}

// push posts form to /par, with basic credentials when user is set.
func (h *harness) push(form url.Values, user, pass string) parResponse {
	h.t.Helper()
	return h.parRaw(http.MethodPost, "", "application/x-www-form-urlencoded", form.Encode(), user, pass)
}

func (h *harness) mustPush(form url.Values, user, pass string) string {
	h.t.Helper()
	pr := h.push(form, user, pass)
	if pr.status != http.StatusCreated || !strings.HasPrefix(pr.RequestURI, authflow.RequestURIPrefix) || pr.ExpiresIn != 60 {
		h.t.Fatalf("POST /par = %d %+v; want 201 with a request_uri for 60 s", pr.status, pr)
	}
	if pr.header.Get("Cache-Control") != "no-store" {
		h.t.Errorf("/par Cache-Control = %q, want no-store", pr.header.Get("Cache-Control"))
	}
	return pr.RequestURI
}

func wantPARError(t *testing.T, pr parResponse, status int, code string) {
	t.Helper()
	if pr.status != status || pr.Error != code {
		t.Fatalf("/par = %d %q (%s), want %d %q", pr.status, pr.Error, pr.Description, status, code)
	}
}

// wantRefusalPage: a refusal shown to the person as a readable 400 page
// naming code, never a redirect.
func wantRefusalPage(t *testing.T, r response, code string) {
	t.Helper()
	if r.location != nil {
		t.Fatalf("authorize redirected to %s; want an error page", r.location)
	}
	wantErrorPage(t, r, http.StatusBadRequest, code)
}

func usePushed(h *harness, br *browser, clientID, requestURI string) response {
	h.t.Helper()
	return h.authorize(br, url.Values{"client_id": {clientID}, "request_uri": {requestURI}})
}

type discoveryDoc struct {
	PAR        string `json:"pushed_authorization_request_endpoint"`
	RequirePAR bool   `json:"require_pushed_authorization_requests"`
}

func (h *harness) discovery() discoveryDoc {
	h.t.Helper()
	r := h.newBrowser().get(h.issuer + "/.well-known/openid-configuration")
	var d discoveryDoc
	if err := json.Unmarshal([]byte(r.body), &d); err != nil || r.status != http.StatusOK {
		h.t.Fatalf("discovery = %d %q: %v", r.status, r.body, err)
	}
	return d
}

// TestPARFlow: push, bring the request_uri to /authorize, sign in at the
// local connector, redeem the code; on every backend. The request_uri is
// used once.
func TestPARFlow(t *testing.T) {
	for name, newStore := range backends() {
		t.Run(name, func(t *testing.T) {
			clk := newClock()
			h := newHarness(t, newStore(t, clk), clk, nil)
			if d := h.discovery(); d.PAR != h.issuer+"/par" || d.RequirePAR {
				t.Errorf("discovery = %+v; want the PAR endpoint, not required", d)
			}
			p := newPKCE()
			params := authParams(p)
			params.Set("connector_id", "local")
			requestURI := h.mustPush(params, "", "")

			br := h.newBrowser()
			r := usePushed(h, br, "app", requestURI)
			if r.status != http.StatusFound || r.location == nil || r.location.Path != "/login/local" {
				t.Fatalf("authorize with request_uri = %d %v %s; want the local login", r.status, r.location, r.body)
			}
			done := h.passwordLogin(br, r.location, "alice", alicePassword)
			if done.status != http.StatusSeeOther || done.location == nil {
				t.Fatalf("login = %d %s", done.status, done.body)
			}
			q := done.location.Query()
			if q.Get("code") == "" || q.Get("state") != params.Get("state") || q.Get("iss") != h.issuer {
				t.Fatalf("redirect = %s; want a code with the pushed state and iss", done.location)
			}
			tr := h.redeem(q.Get("code"), p)
			if tr.status != http.StatusOK || tr.IDToken == "" {
				t.Fatalf("redeem = %d %s: %s", tr.status, tr.Error, tr.Description)
			}
			idt, err := h.verifier("app").Verify(context.Background(), tr.IDToken)
			if err != nil || idt.Nonce != params.Get("nonce") {
				t.Fatalf("id_token: %v (nonce %v); want the pushed nonce", err, idt)
			}
			wantRefusalPage(t, usePushed(h, h.newBrowser(), "app", requestURI), "invalid_request_uri")
		})
	}
}

// TestPARClientAuthentication: /par authenticates clients as /token does.
func TestPARClientAuthentication(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: "c1", Algorithm: "ES256", Use: "sig"}}})
	h := newHarness(t, nil, nil, func(cfg *config.Config) {
		cfg.Clients = append(cfg.Clients, config.Client{
			ID: "robot", Name: "Robot", TokenEndpointAuthMethod: "private_key_jwt", JWKS: string(jwks),
			RedirectURIs: []string{"https://robot.example.com/cb"}, Scopes: []string{"openid"}, GrantTypes: []string{"authorization_code"},
		})
	})
	svc := authParams(newPKCE())
	svc.Set("client_id", "svc")
	svc.Set("redirect_uri", svcRedirect)
	h.mustPush(svc, "svc", svcSecret)
	post := authParams(newPKCE())
	post.Set("client_id", "svc")
	post.Set("redirect_uri", svcRedirect)
	post.Set("client_secret", svcSecret)
	h.mustPush(post, "", "")

	now := h.clock.Now()
	robot := func(aud string) url.Values {
		tok, err := workloadtest.SignWith(jose.ES256, key, "c1", map[string]any{"iss": "robot", "sub": "robot", "aud": aud, "jti": oauth.RandomToken(12), "iat": now.Unix(), "exp": now.Add(time.Minute).Unix()})
		if err != nil {
			t.Fatal(err)
		}
		return url.Values{"client_id": {"robot"}, "redirect_uri": {"https://robot.example.com/cb"}, "response_type": {"code"}, "scope": {"openid"},
			"client_assertion_type": {oauth.AssertionTypeJWTBearer}, "client_assertion": {tok}}
	}
	h.mustPush(robot(h.issuer), "", "")
	replayed := robot(h.issuer)
	h.mustPush(replayed, "", "")

	for name, tc := range map[string]struct {
		form       url.Values
		user, pass string
	}{
		"confidential client without credentials": {svc, "", ""},
		"wrong secret":                 {svc, "svc", "wrong-secret"},
		"replayed assertion":           {replayed, "", ""},
		"assertion for another server": {robot("https://elsewhere.example"), "", ""},
		"unknown client":               {url.Values{"client_id": {"ghost"}, "redirect_uri": {appRedirect}, "response_type": {"code"}, "scope": {"openid"}}, "", ""},
	} {
		t.Run(name, func(t *testing.T) {
			pr := h.push(tc.form, tc.user, tc.pass)
			wantPARError(t, pr, http.StatusUnauthorized, oauth.ErrInvalidClient)
			if pr.header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		})
	}
}

// TestPARRefusals: every bad pushed request, and every bad use of a
// request_uri, is refused with the right error.
func TestPARRefusals(t *testing.T) {
	h := newHarness(t, nil, nil, nil)
	with := func(kv ...string) url.Values {
		v := authParams(newPKCE())
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] == "" {
				v.Del(kv[i])
			} else {
				v.Set(kv[i], kv[i+1])
			}
		}
		return v
	}
	form := "application/x-www-form-urlencoded"
	for _, tc := range []struct {
		name   string
		pr     func() parResponse
		status int
		code   string
	}{
		{"unregistered redirect_uri", func() parResponse { return h.push(with("redirect_uri", "https://evil.example/cb"), "", "") }, 400, oauth.ErrInvalidRequest},
		{"unknown scope", func() parResponse { return h.push(with("scope", "openid admin"), "", "") }, 400, oauth.ErrInvalidScope},
		{"no PKCE", func() parResponse { return h.push(with("code_challenge", "", "code_challenge_method", ""), "", "") }, 400, oauth.ErrInvalidRequest},
		{"plain PKCE", func() parResponse { return h.push(with("code_challenge_method", "plain"), "", "") }, 400, oauth.ErrInvalidRequest},
		{"request_uri inside", func() parResponse {
			return h.push(with("request_uri", authflow.RequestURIPrefix+oauth.RandomToken(32)), "", "")
		}, 400, oauth.ErrInvalidRequest},
		{"GET", func() parResponse { return h.parRaw(http.MethodGet, "?"+with().Encode(), "", "", "", "") }, 405, oauth.ErrInvalidRequest},
		{"oversized body", func() parResponse {
			return h.parRaw(http.MethodPost, "", form, with().Encode()+"&pad="+strings.Repeat("p", 1<<20), "", "")
		}, 413, oauth.ErrInvalidRequest},
		{"JSON body", func() parResponse {
			return h.parRaw(http.MethodPost, "", "application/json", `{"client_id":"app"}`, "", "")
		}, 400, oauth.ErrInvalidRequest},
		{"parameters in the query", func() parResponse { return h.parRaw(http.MethodPost, "?"+with().Encode(), form, "", "", "") }, 400, oauth.ErrInvalidRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantPARError(t, tc.pr(), tc.status, tc.code)
		})
	}

	br := h.newBrowser()
	t.Run("request_uri of another client", func(t *testing.T) {
		requestURI := h.mustPush(authParams(newPKCE()), "", "")
		wantRefusalPage(t, usePushed(h, br, "other", requestURI), "invalid_request_uri")
		// The client that pushed it still can.
		if r := usePushed(h, br, "app", requestURI); r.status != http.StatusFound {
			t.Fatalf("authorize by the pushing client = %d %s", r.status, r.body)
		}
	})
	t.Run("forged request_uri", func(t *testing.T) {
		wantRefusalPage(t, usePushed(h, br, "app", authflow.RequestURIPrefix+oauth.RandomToken(32)), "invalid_request_uri")
		wantRefusalPage(t, usePushed(h, br, "app", "https://evil.example/request.jwt"), "invalid_request_uri")
	})
	t.Run("expired request_uri", func(t *testing.T) {
		requestURI := h.mustPush(authParams(newPKCE()), "", "")
		h.clock.Advance(61 * time.Second)
		wantRefusalPage(t, usePushed(h, br, "app", requestURI), "invalid_request_uri")
	})
	t.Run("other parameters are ignored", func(t *testing.T) {
		params := authParams(newPKCE())
		params.Set("prompt", "none")
		requestURI := h.mustPush(params, "", "")
		r := h.authorize(br, url.Values{"client_id": {"app"}, "request_uri": {requestURI}, "redirect_uri": {"http://127.0.0.1:8888/cb"}, "state": {"browser"}, "prompt": {"login"}})
		if r.location == nil || r.location.Host != "127.0.0.1:9999" || r.location.Query().Get("error") != "login_required" || r.location.Query().Get("state") != params.Get("state") {
			t.Fatalf("authorize = %d %v; want the pushed prompt=none answered at the pushed redirect_uri with the pushed state", r.status, r.location)
		}
	})
}

// TestPARRequired: when pushed requests are required, server-wide or for
// one client, /authorize without request_uri is refused with
// invalid_request at the registered redirect_uri; a pushed request goes
// through. The server-wide switch is applied on reload.
func TestPARRequired(t *testing.T) {
	wantRefused := func(t *testing.T, h *harness, params url.Values) {
		t.Helper()
		r := h.authorize(h.newBrowser(), params)
		if r.location == nil || !strings.HasPrefix(r.location.String(), params.Get("redirect_uri")+"?") ||
			r.location.Query().Get("error") != oauth.ErrInvalidRequest || r.location.Query().Get("iss") != h.issuer || r.location.Query().Get("state") != params.Get("state") {
			t.Fatalf("authorize without request_uri = %d %v; want invalid_request at %s", r.status, r.location, params.Get("redirect_uri"))
		}
	}
	wantPushedWorks := func(t *testing.T, h *harness, params url.Values, user, pass string) {
		t.Helper()
		requestURI := h.mustPush(params, user, pass)
		if r := usePushed(h, h.newBrowser(), params.Get("client_id"), requestURI); r.status != http.StatusFound || r.location == nil || !strings.HasPrefix(r.location.Path, "/login") {
			t.Fatalf("authorize with request_uri = %d %v %s", r.status, r.location, r.body)
		}
	}
	t.Run("server-wide", func(t *testing.T) {
		h := newHarness(t, nil, nil, func(c *config.Config) { c.PAR.Require = true })
		if d := h.discovery(); !d.RequirePAR {
			t.Error("discovery does not say pushed requests are required")
		}
		wantRefused(t, h, authParams(newPKCE()))
		bad := authParams(newPKCE())
		bad.Set("redirect_uri", "https://evil.example/cb")
		wantRefusalPage(t, h.authorize(h.newBrowser(), bad), oauth.ErrInvalidRequest)
		wantPushedWorks(t, h, authParams(newPKCE()), "", "")
	})
	t.Run("one client", func(t *testing.T) {
		h := newHarness(t, nil, nil, func(c *config.Config) {
			for i := range c.Clients {
				c.Clients[i].RequirePushedAuthorizationRequests = c.Clients[i].ID == "svc"
			}
		})
		if d := h.discovery(); d.RequirePAR {
			t.Error("discovery says pushed requests are required server-wide")
		}
		svc := authParams(newPKCE())
		svc.Set("client_id", "svc")
		svc.Set("redirect_uri", svcRedirect)
		wantRefused(t, h, svc)
		wantPushedWorks(t, h, svc, "svc", svcSecret)
		if got := authorizeAs(h, "app", appRedirect); got != http.StatusFound {
			t.Errorf("authorize by a client not required to push = %d, want 302", got)
		}
	})
	t.Run("reload", func(t *testing.T) {
		h := newHarness(t, nil, nil, nil)
		rep, err := h.b.ReloadWithReport(context.Background(), harnessConfig(t, h.issuer, nil, func(c *config.Config) {
			c.PAR.Require = true
			c.PAR.RequestLifetime = new(2 * time.Minute)
		}))
		if err != nil {
			t.Fatal(err)
		}
		if got := changePaths(rep.Applied); !slices.Equal(got, []string{"par.request_lifetime", "par.require"}) || len(rep.RestartRequired) != 0 {
			t.Fatalf("reload report = %+v; want par applied", rep)
		}
		if d := h.discovery(); !d.RequirePAR {
			t.Error("discovery after reload does not say pushed requests are required")
		}
		wantRefused(t, h, authParams(newPKCE()))
		if pr := h.push(authParams(newPKCE()), "", ""); pr.status != http.StatusCreated || pr.ExpiresIn != 120 {
			t.Errorf("/par after reload = %d %+v; want expires_in 120", pr.status, pr)
		}
	})
}
