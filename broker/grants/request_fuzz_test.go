package grants_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/fedbroker/fedbroker/broker/clientauth"
	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/grants"
	"github.com/fedbroker/fedbroker/broker/oauth"
	"github.com/fedbroker/fedbroker/broker/runtime"
	"github.com/fedbroker/fedbroker/broker/runtime/runtimetest"
	"github.com/fedbroker/fedbroker/broker/storage"
	"github.com/fedbroker/fedbroker/broker/tokens"
)

// endpoint is the token endpoint of a fixture behind echo, with the
// broker's error writing (oauth.Writer, machine answers).
type endpoint struct {
	fixture
	e *echo.Echo
}

func newEndpoint(t testing.TB, mutate func(*config.Config)) endpoint {
	f := newFixtureWith(t, "", mutate)
	ep := &grants.Endpoint{
		Grants:  f.g,
		Clients: clientauth.New(clientauth.Deps{Issuer: runtimetest.Issuer, Replay: f.Store, Now: f.Clock.Now}),
		Runtime: func() *runtime.Runtime { return f.Runtime },
	}
	w := &oauth.Writer{Issuer: runtimetest.Issuer, Log: slog.New(slog.DiscardHandler)}
	e := echo.New()
	e.HTTPErrorHandler = func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		var he *echo.HTTPError
		if errors.As(err, &he) {
			code := oauth.ErrInvalidRequest
			if he.Code >= 500 {
				code = oauth.ErrServerError
			}
			err = oauth.NewError(he.Code, code, "%s", strings.ToLower(http.StatusText(he.Code)))
		}
		w.Write(c.Response(), c.Request(), err, true)
	}
	e.POST("/token", ep.HandleToken)
	return endpoint{f, e}
}

// post sends a token request, with query as its raw query string, and
// returns the recorded response.
func (ep endpoint) post(query, contentType, authorization string, body []byte) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodPost, "/token", strings.NewReader(string(body)))
	r.URL.RawQuery = query
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	if authorization != "" {
		r.Header.Set("Authorization", authorization)
	}
	rec := httptest.NewRecorder()
	ep.e.ServeHTTP(rec, r)
	return rec
}

// fill replaces the placeholders of a fuzzed request with live values, so
// that the fuzzer reaches the grants behind client authentication:
// {secret} svc's secret, {basic} svc's basic credentials, {verifier} the
// PKCE verifier, {code} a fresh code of svc, {refresh} a fresh refresh
// token of svc, {at} a fresh access token issued to svc.
func (ep endpoint) fill(t *testing.T, s string) string {
	if !strings.Contains(s, "{") {
		return s
	}
	ctx := context.Background()
	repl := []string{
		"{secret}", runtimetest.SvcSecret,
		"{basic}", "Basic " + base64.StdEncoding.EncodeToString([]byte("svc:"+runtimetest.SvcSecret)),
		"{verifier}", verifier,
	}
	if strings.Contains(s, "{code}") {
		repl = append(repl, "{code}", ep.code(t, "openid", "offline_access", "email"))
	}
	if strings.Contains(s, "{refresh}") {
		famID := oauth.RandomToken(16)
		token := famID + "." + oauth.RandomToken(32)
		now := ep.Clock.Now()
		err := ep.Store.CreateRefresh(ctx, storage.RefreshFamily{ID: famID, CreatedAt: now, LastUsed: now, IdleExpiry: now.Add(time.Hour), AbsoluteExpiry: now.Add(time.Hour),
			Grant: storage.Grant{ClientID: "svc", Subject: "sub-alice", Scopes: []string{"openid", "offline_access"}, ConnectorID: "local"}}, token)
		if err != nil {
			t.Fatal(err)
		}
		repl = append(repl, "{refresh}", token)
	}
	if strings.Contains(s, "{at}") {
		g := storage.Grant{ClientID: "svc", Subject: "sub-alice", Scopes: []string{"openid", "read"}, FamilyRef: tokens.FamilyRef(oauth.RandomToken(16))}
		at, _, err := ep.a.AccessToken(ep.Client(t, "svc"), g, []string{"api.acme.com"}, ep.Clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		repl = append(repl, "{at}", at)
	}
	return strings.NewReplacer(repl...).Replace(s)
}

// tokenErrors are the error codes the token endpoint may answer.
var tokenErrors = []string{
	oauth.ErrInvalidRequest, oauth.ErrInvalidClient, oauth.ErrInvalidGrant, oauth.ErrUnauthorizedClient,
	oauth.ErrUnsupportedGrantType, oauth.ErrInvalidScope, oauth.ErrInvalidTarget,
}

// authenticatedAs is who a request validly authenticates as, judged apart
// from clientauth: svc with its secret (basic or post, exactly one), or
// the public client app by client_id alone; "" for anyone else.
func authenticatedAs(r *http.Request, form url.Values) string {
	user, pass, basic := r.BasicAuth()
	_, post := form["client_secret"]
	_, assertion := form["client_assertion"]
	switch {
	case basic && !post && !assertion:
		u, err1 := url.QueryUnescape(user)
		p, err2 := url.QueryUnescape(pass)
		if err1 == nil && err2 == nil && u == "svc" && p == runtimetest.SvcSecret {
			return "svc"
		}
	case post && !basic && !assertion:
		if slices.Equal(form["client_id"], []string{"svc"}) && slices.Equal(form["client_secret"], []string{runtimetest.SvcSecret}) {
			return "svc"
		}
	case !basic && !post && !assertion:
		if slices.Equal(form["client_id"], []string{"app"}) {
			return "app"
		}
	}
	return ""
}

// FuzzTokenRequest feeds arbitrary bodies and headers through ParseRequest
// and the whole token endpoint. It must never panic nor answer 5xx; every
// error is a JSON OAuth error with a known code; a token goes only to a
// request that authenticates its client, and names that client.
func FuzzTokenRequest(f *testing.F) {
	const form = "application/x-www-form-urlencoded"
	const cb = "redirect_uri=https%3A%2F%2Fsvc.example.com%2Fcallback"
	huge := strings.Repeat("A", 70<<10)
	for _, s := range []struct{ body, ct, auth, query string }{
		// Valid, every grant type and both client authentications.
		{"grant_type=authorization_code&code={code}&" + cb + "&code_verifier={verifier}&client_id=svc&client_secret={secret}", form, "", ""},
		{"grant_type=authorization_code&code={code}&" + cb + "&code_verifier={verifier}", form, "{basic}", ""},
		{"grant_type=refresh_token&refresh_token={refresh}", form, "{basic}", ""},
		{"grant_type=refresh_token&refresh_token={refresh}&scope=openid", form + "; charset=utf-8", "{basic}", ""},
		{"grant_type=client_credentials&scope=read&audience=billing.acme.com", form, "{basic}", ""},
		{"grant_type=client_credentials&client_id=svc&client_secret={secret}&resource=api.acme.com&resource=billing.acme.com", form, "", ""},
		{"grant_type=" + url.QueryEscape(config.GrantTokenExchange) + "&subject_token={at}&subject_token_type=" + url.QueryEscape(oauth.TokenTypeAccessToken) + "&audience=billing.acme.com", form, "{basic}", ""},
		{"grant_type=authorization_code&code={code}&" + cb + "&code_verifier={verifier}&client_id=app", form, "", ""},
		// Hostile.
		{"grant_type=client_credentials&grant_type=authorization_code", form, "{basic}", ""},
		{"grant_type=client_credentials&client_id=svc&client_id=app&client_secret={secret}", form, "", ""},
		{"grant_type=client_credentials&client_secret={secret}&client_secret=x&client_id=svc", form, "", ""},
		{"grant_type=client_credentials&client_id=svc&client_secret={secret}", form, "{basic}", ""},
		{"grant_type=client_credentials&client_id=app", form, "", ""},
		{"grant_type=client_credentials&client_id=svc", form, "", ""},
		{"grant_type=client_credentials&client_id=svc&client_secret=wrong", form, "", ""},
		{"grant_type=client_credentials", form, "Basic " + base64.StdEncoding.EncodeToString([]byte("svc:wrong")), ""},
		{"grant_type=client_credentials", form, "Basic %%%", ""},
		{"grant_type=client_credentials", form, "Basic " + base64.StdEncoding.EncodeToString([]byte("s%vc:{secret}")), ""},
		{"grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=a.b.c&client_id=svc", form, "", ""},
		{"grant_type=client_credentials&client_assertion=" + huge, form, "", ""},
		{"grant_type=refresh_token&refresh_token=" + huge, form, "{basic}", ""},
		{"grant_type=refresh_token&refresh_token=" + strings.Repeat("x.", 200), form, "{basic}", ""},
		{"grant_type=refresh_token&refresh_token=.{secret}", form, "{basic}", ""},
		{"grant_type=authorization_code&code=" + huge[:200], form, "{basic}", ""},
		{"grant_type=%zz&client_id=app", form, "", ""},
		{"grant_type=client_credentials&scope=%E2%28%A1&audience=%00", form, "{basic}", ""},
		{"\xff\xfe=\x00;&&&==&=", form, "{basic}", ""},
		{"grant_type=client_credentials;client_id=svc", form, "", ""},
		{"grant_type=client_credentials", "application/json", "{basic}", ""},
		{"grant_type=client_credentials", "Application/X-WWW-Form-Urlencoded", "{basic}", ""},
		{"grant_type=client_credentials", form + "x", "{basic}", ""},
		{"grant_type=client_credentials", form + ";;;", "{basic}", ""},
		{"grant_type=client_credentials", "", "{basic}", ""},
		{"", form, "{basic}", "grant_type=client_credentials"},
		{"grant_type=client_credentials", form, "{basic}", "%zz"},
		{"grant_type=password&username=alice&password=x", form, "{basic}", ""},
		{"grant_type=" + url.QueryEscape(config.GrantTokenExchange) + "&subject_token=" + huge + "&subject_token_type=" + url.QueryEscape(oauth.TokenTypeJWT), form, "{basic}", ""},
		{"grant_type=" + url.QueryEscape(config.GrantTokenExchange) + "&subject_token={at}&subject_token_type=" + url.QueryEscape(oauth.TokenTypeAccessToken) + "&requested_token_type=" + url.QueryEscape(oauth.TokenTypeIDToken), form, "{basic}", ""},
		{"grant_type=" + url.QueryEscape(config.GrantTokenExchange) + "&subject_token={at}&subject_token_type=" + url.QueryEscape(oauth.TokenTypeAccessToken) + "&actor_token={at}", form, "{basic}", ""},
		{"grant_type=" + url.QueryEscape(config.GrantTokenExchange) + "&subject_token={at}&subject_token_type=x&scope=openid+admin", form, "{basic}", ""},
		{"grant_type=authorization_code&code={code}&" + cb + "&code_verifier=" + strings.Repeat("v", 200), form, "{basic}", ""},
		{"grant_type=authorization_code&code={code}&redirect_uri=https%3A%2F%2Fevil.example%2F&code_verifier={verifier}", form, "{basic}", ""},
		{"grant_type=authorization_code&code={code}&" + cb + "&code_verifier={verifier}&client_id=app", form, "{basic}", ""},
	} {
		f.Add([]byte(s.body), s.ct, s.auth, s.query)
	}

	ep := newEndpoint(f, svcDelegates)
	f.Fuzz(func(t *testing.T, body []byte, contentType, authorization, query string) {
		// ParseRequest on its own: repeated parameters are refused, except
		// audience and resource; everything else is read as sent.
		if values, err := url.ParseQuery(string(body)); err == nil {
			req, err := grants.ParseRequest(values)
			repeated := false
			for k, v := range values {
				if len(v) > 1 && k != "audience" && k != "resource" {
					repeated = true
				}
			}
			switch {
			case repeated && oauthCode(err) != oauth.ErrInvalidRequest:
				t.Fatalf("ParseRequest(repeated) = %v, want invalid_request", err)
			case !repeated && err != nil:
				t.Fatalf("ParseRequest = %v", err)
			case !repeated && (req.GrantType != values.Get("grant_type") || req.RefreshToken != values.Get("refresh_token") || !slices.Equal(req.Audience, values["audience"])):
				t.Fatalf("ParseRequest(%v) = %+v", values, req)
			}
		}

		filled := []byte(ep.fill(t, string(body)))
		rec := ep.post(query, contentType, ep.fill(t, authorization), filled)
		if rec.Code >= 500 {
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Fatalf("status %d with Content-Type %q: %s", rec.Code, ct, rec.Body)
		}
		if rec.Header().Get("Cache-Control") != "no-store" {
			t.Fatalf("status %d without Cache-Control: no-store", rec.Code)
		}
		if rec.Code != http.StatusOK {
			var e struct {
				Error       string `json:"error"`
				Description string `json:"error_description"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || !slices.Contains(tokenErrors, e.Error) {
				t.Fatalf("status %d, body %s: not an OAuth error with a known code", rec.Code, rec.Body)
			}
			return
		}
		// A token: only for a request that authenticated its client.
		var resp tokens.Response
		if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil || resp.AccessToken == "" || resp.TokenType == "" {
			t.Fatalf("200 without a token response: %s", rec.Body)
		}
		r := httptest.NewRequest(http.MethodPost, "/token", nil)
		if a := ep.fill(t, authorization); a != "" {
			r.Header.Set("Authorization", a)
		}
		values, err := url.ParseQuery(string(filled))
		if err != nil {
			t.Fatalf("200 for a body that does not parse: %q", filled)
		}
		who := authenticatedAs(r, values)
		if who == "" {
			t.Fatalf("a token for a request without valid client authentication: body %q, Authorization %q", filled, authorization)
		}
		if resp.IssuedTokenType == oauth.TokenTypeIDToken {
			return
		}
		at, err := ep.a.CheckAccessToken(context.Background(), resp.AccessToken)
		if err != nil || at.ClientID != who {
			t.Fatalf("access token for %s: %+v, %v", who, at, err)
		}
	})
}

// TestTokenContentType: the media type is compared as a media type
// (case-insensitive, parameters allowed), not as a string prefix.
func TestTokenContentType(t *testing.T) {
	ep := newEndpoint(t, nil)
	for _, tc := range []struct {
		ct   string
		want int
	}{
		{"application/x-www-form-urlencoded", http.StatusOK},
		{"application/x-www-form-urlencoded; charset=UTF-8", http.StatusOK},
		{"Application/X-WWW-Form-Urlencoded", http.StatusOK},
		{"application/x-www-form-urlencodedx", http.StatusBadRequest},
		{"application/x-www-form-urlencoded;;", http.StatusBadRequest},
		{"application/json", http.StatusBadRequest},
		{"", http.StatusBadRequest},
	} {
		rec := ep.post("", tc.ct, ep.fill(t, "{basic}"), []byte("grant_type=client_credentials"))
		if rec.Code != tc.want {
			t.Errorf("Content-Type %q: %d %s, want %d", tc.ct, rec.Code, rec.Body, tc.want)
		}
		if tc.want != http.StatusOK && !strings.Contains(rec.Body.String(), "x-www-form-urlencoded") {
			t.Errorf("Content-Type %q: %s, want the refusal to name the media type", tc.ct, rec.Body)
		}
	}
}
