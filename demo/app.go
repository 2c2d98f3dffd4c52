// Package demo runs the whole fedbroker story on one machine with no
// internet: the broker, two upstream identity providers of different kinds,
// a demo web application that signs in through the broker, and a demo API
// that verifies the broker's access tokens locally.
package demo

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// App is a small OpenID Connect client (authorization code + PKCE) that
// shows the decoded internal tokens it received and calls the demo API with
// the access token.
type App struct {
	issuer, clientID, baseURL, apiURL string
	log                               *slog.Logger
	client                            *http.Client

	once     sync.Once
	initErr  error
	provider *oidc.Provider
	oauth    *oauth2.Config
	verifier *oidc.IDTokenVerifier

	mu      sync.Mutex
	pending map[string]pendingLogin // by state
}

type pendingLogin struct {
	verifier, nonce string
	created         time.Time
}

// NewApp returns the demo app for the broker at issuer. baseURL is where
// the app itself is served; its callback is baseURL + "/callback".
func NewApp(issuer, clientID, baseURL, apiURL string, client *http.Client, log *slog.Logger) *App {
	return &App{issuer: issuer, clientID: clientID, baseURL: baseURL, apiURL: apiURL, client: client, log: log, pending: make(map[string]pendingLogin)}
}

func (a *App) init(ctx context.Context) error {
	a.once.Do(func() {
		ctx = oidc.ClientContext(ctx, a.client)
		a.provider, a.initErr = oidc.NewProvider(ctx, a.issuer)
		if a.initErr != nil {
			return
		}
		a.oauth = &oauth2.Config{
			ClientID:    a.clientID,
			Endpoint:    a.provider.Endpoint(),
			RedirectURL: a.baseURL + "/callback",
			Scopes:      []string{oidc.ScopeOpenID, "profile", "email", "groups", oidc.ScopeOfflineAccess},
		}
		a.verifier = a.provider.Verifier(&oidc.Config{ClientID: a.clientID})
	})
	return a.initErr
}

// Handler serves the app: / (start), /login, /callback.
func (a *App) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", a.home)
	mux.HandleFunc("GET /login", a.login)
	mux.HandleFunc("GET /callback", a.callback)
	return mux
}

func (a *App) home(w http.ResponseWriter, r *http.Request) {
	render(w, http.StatusOK, homePage, map[string]string{"Issuer": a.issuer})
}

func (a *App) login(w http.ResponseWriter, r *http.Request) {
	if err := a.init(r.Context()); err != nil {
		a.fail(w, "The broker's discovery document could not be read", err)
		return
	}
	state, nonce, verifier := randomString(), randomString(), oauth2.GenerateVerifier()
	a.mu.Lock()
	for k, p := range a.pending {
		if time.Since(p.created) > 10*time.Minute {
			delete(a.pending, k)
		}
	}
	a.pending[state] = pendingLogin{verifier: verifier, nonce: nonce, created: time.Now()}
	a.mu.Unlock()
	opts := []oauth2.AuthCodeOption{oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier)}
	if c := r.URL.Query().Get("connector_id"); c != "" {
		opts = append(opts, oauth2.SetAuthURLParam("connector_id", c))
	}
	http.Redirect(w, r, a.oauth.AuthCodeURL(state, opts...), http.StatusFound)
}

func (a *App) callback(w http.ResponseWriter, r *http.Request) {
	if err := a.init(r.Context()); err != nil {
		a.fail(w, "The broker's discovery document could not be read", err)
		return
	}
	q := r.URL.Query()
	if e := q.Get("error"); e != "" {
		a.fail(w, "The broker refused the sign-in: "+e, fmt.Errorf("%s: %s", e, q.Get("error_description")))
		return
	}
	if q.Get("iss") != a.issuer {
		a.fail(w, "The authorization response came from an unexpected issuer", fmt.Errorf("iss %q", q.Get("iss")))
		return
	}
	a.mu.Lock()
	p, ok := a.pending[q.Get("state")]
	delete(a.pending, q.Get("state"))
	a.mu.Unlock()
	if !ok {
		a.fail(w, "Unknown or reused state: start the sign-in again", nil)
		return
	}
	ctx := oidc.ClientContext(r.Context(), a.client)
	tok, err := a.oauth.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(p.verifier))
	if err != nil {
		a.fail(w, "The code could not be exchanged for tokens", err)
		return
	}
	rawID, _ := tok.Extra("id_token").(string)
	idt, err := a.verifier.Verify(ctx, rawID)
	if err != nil {
		a.fail(w, "The ID token did not verify", err)
		return
	}
	if idt.Nonce != p.nonce {
		a.fail(w, "The ID token's nonce does not match", nil)
		return
	}
	apiStatus, apiBody := a.callAPI(r.Context(), tok.AccessToken)
	render(w, http.StatusOK, tokensPage, map[string]any{
		"Issuer":      a.issuer,
		"Subject":     idt.Subject,
		"IDToken":     decodeJWT(rawID),
		"AccessToken": decodeJWT(tok.AccessToken),
		"HasRefresh":  tok.RefreshToken != "",
		"APIStatus":   apiStatus,
		"APIBody":     apiBody,
		"APIURL":      a.apiURL,
	})
}

// callAPI calls the demo API with the access token, as a service would.
func (a *App) callAPI(ctx context.Context, accessToken string) (string, string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.apiURL+"/whoami", nil)
	if err != nil {
		return "error", err.Error()
	}
	req.Header.Set("Authorization", "Bearer "+accessToken)
	resp, err := a.client.Do(req)
	if err != nil {
		return "error", err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.Status, indentJSON(body)
}

func (a *App) fail(w http.ResponseWriter, msg string, err error) {
	if err != nil {
		a.log.Warn("demo app", "msg", msg, "err", err)
	}
	render(w, http.StatusBadGateway, errorPage, map[string]string{"Message": msg})
}

// decodeJWT shows a JWT's header and payload, pretty-printed. It does not
// verify anything: the app verified the ID token with go-oidc and the API
// verifies the access token.
func decodeJWT(tok string) map[string]string {
	parts := strings.Split(tok, ".")
	out := map[string]string{"Raw": tok}
	if len(parts) != 3 {
		return out
	}
	for i, name := range []string{"Header", "Payload"} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err == nil {
			out[name] = indentJSON(b)
		}
	}
	return out
}

func indentJSON(b []byte) string {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return string(b)
	}
	pretty, _ := json.MarshalIndent(v, "", "  ")
	return string(pretty)
}

func randomString() string {
	sum := sha256.Sum256([]byte(oauth2.GenerateVerifier()))
	return base64.RawURLEncoding.EncodeToString(sum[:18])
}

func render(w http.ResponseWriter, status int, t *template.Template, data any) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = t.Execute(w, data)
}

const pageStyle = `<style>body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#1d2330}pre{background:#f4f5f7;padding:1rem;overflow:auto;border-radius:6px}a.button{display:inline-block;padding:.6rem 1.2rem;background:#2456c9;color:#fff;border-radius:4px;text-decoration:none;margin-right:.5rem}.ok{color:#17693a}.bad{color:#a3161a}</style>`

var homePage = template.Must(template.New("home").Parse(`<!doctype html><html><head><meta charset="utf-8"><title>Demo app</title>` + pageStyle + `</head><body>
<h1>Demo app</h1>
<p>This application trusts one issuer: <code>{{.Issuer}}</code>. Sign in through the broker with any upstream identity provider.</p>
<p><a class="button" id="signin" href="/login">Sign in</a></p>
</body></html>`))

var tokensPage = template.Must(template.New("tokens").Parse(`<!doctype html><html><head><meta charset="utf-8"><title>Signed in</title>` + pageStyle + `</head><body>
<h1 id="signed-in">Signed in as <code>{{.Subject}}</code></h1>
<p>Issuer: <code>{{.Issuer}}</code>. Refresh token received: {{.HasRefresh}}.</p>
<h2>ID token</h2>
<pre id="id-token-header">{{index .IDToken "Header"}}</pre>
<pre id="id-token">{{index .IDToken "Payload"}}</pre>
<h2>Access token</h2>
<pre id="access-token-header">{{index .AccessToken "Header"}}</pre>
<pre id="access-token">{{index .AccessToken "Payload"}}</pre>
<h2>Demo API (<code>{{.APIURL}}/whoami</code>), verifying the access token locally</h2>
<p id="api-status">{{.APIStatus}}</p>
<pre id="api-body">{{.APIBody}}</pre>
<p><a class="button" href="/login">Sign in again</a></p>
</body></html>`))

var errorPage = template.Must(template.New("error").Parse(`<!doctype html><html><head><meta charset="utf-8"><title>Sign-in failed</title>` + pageStyle + `</head><body>
<h1 class="bad">Sign-in failed</h1><p id="error">{{.Message}}</p><p><a class="button" href="/">Start again</a></p>
</body></html>`))
