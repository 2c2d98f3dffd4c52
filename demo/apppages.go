package demo

import (
	"encoding/base64"
	"encoding/json"
	"html/template"
	"net/http"
	"strings"
)

// errorData is the error page's content.
type errorData struct {
	Heading, Message string
	Error, Detail    string // the broker's error and error_description
	Retry, RetryText string // a link onward
}

// refused shows an error response of the broker (RFC 6749 §4.1.2.1), its
// error_description included: access_denied when the person cancelled at
// the broker (or an upstream refused them), anything else as a failure.
func (a *App) refused(w http.ResponseWriter, code, description string) {
	a.log.Info("demo app: the broker answered with an error", "error", code, "error_description", description)
	d := errorData{Heading: "Sign-in failed", Message: "The broker did not sign you in.", Error: code, Detail: description, Retry: "/login", RetryText: "Try again"}
	if code == "access_denied" {
		d.Heading, d.Message = "Sign-in cancelled", "You are not signed in: the sign-in was cancelled, or refused."
	}
	render(w, http.StatusBadRequest, errorPage, d)
}

// fail shows a failed sign-in and logs why. The message is the log
// line's own: no attribute is named msg.
func (a *App) fail(w http.ResponseWriter, msg string, err error) {
	if err != nil {
		a.log.Warn("demo app: "+msg, "err", err)
	}
	render(w, http.StatusBadGateway, errorPage, errorData{Heading: "Sign-in failed", Message: msg, Retry: "/login", RetryText: "Try again"})
}

// failSignOut shows a failed sign-out and logs why.
func (a *App) failSignOut(w http.ResponseWriter, status int, msg string, err error) {
	if err != nil {
		a.log.Warn("demo app: "+msg, "err", err)
	}
	render(w, status, errorPage, errorData{Heading: "Sign-out failed", Message: msg, Retry: "/", RetryText: "Back to the app"})
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

// pageCSP is the app's Content-Security-Policy: its own script
// (session.js) and requests to itself only, the inline style of pageHead.
const pageCSP = "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; img-src 'self'; base-uri 'none'; frame-ancestors 'none'"

// render writes a page of the app, never cached.
func render(w http.ResponseWriter, status int, t *template.Template, data any) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.Header().Set("Content-Security-Policy", pageCSP)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = t.Execute(w, data)
}

// pageHead opens every page of the app: the mobile viewport and the style.
const pageHead = `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>Demo app</title><style>
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:#f4f5f7;color:#1d2330;margin:0;line-height:1.45}
main{max-width:60rem;margin:2rem auto;padding:0 1rem}
.card{background:#fff;padding:1.5rem;border-radius:8px;box-shadow:0 1px 4px rgba(0,0,0,.12);margin-bottom:1rem}
h1{font-size:1.4rem;margin-top:0}h2{font-size:1.1rem;margin:1.2rem 0 .5rem}
code{overflow-wrap:anywhere}
pre{background:#f4f5f7;padding:.8rem;overflow:auto;border-radius:6px;font-size:.85rem;margin:.4rem 0}
pre.wrap{white-space:pre-wrap;word-break:break-all;user-select:all}
.button,button{display:inline-block;margin:.3rem .5rem .3rem 0;padding:.6rem 1.2rem;background:#2456c9;color:#fff;border:1px solid #2456c9;border-radius:4px;text-decoration:none;cursor:pointer;font:inherit}
.button.secondary{background:#fff;color:#2456c9}
form.inline{display:inline}
.notice{background:#e7f4ec;color:#17693a;padding:.6rem .8rem;border-radius:4px}
.hint{color:#5c6475;font-size:.9rem}
.ok{color:#17693a}.bad,.error{color:#a3161a}
</style></head><body><main>`

const pageFoot = `</main></body></html>`

var homePage = template.Must(template.New("home").Parse(pageHead + `
<div class="card">
<h1>Demo app</h1>
{{if .SignedOut}}<p class="notice" id="signed-out" role="status">You have signed out of the demo app and of the broker.</p>{{end}}
{{if .Ended}}<p class="notice" id="ended-elsewhere" role="status">Your session was ended (signed out elsewhere): at the broker, at your identity provider or by an administrator.</p>{{end}}
<p>This application trusts one issuer: <code>{{.Issuer}}</code>. Sign in through the broker with any upstream identity provider.</p>
<p><a class="button" id="signin" href="/login">Sign in</a></p>
</div>` + pageFoot))

var tokensPage = template.Must(template.New("tokens").Parse(pageHead + `
<div class="card">
<h1 id="signed-in">Signed in as <code>{{.Subject}}</code></h1>
<p>Issuer: <code>{{.Issuer}}</code>. Refresh token held: {{.HasRefresh}}.{{if .RefreshFailed}} <span class="bad">The last refresh failed: sign in again.</span>{{end}}</p>
<div><form class="inline" method="post" action="/logout"><input type="hidden" name="csrf" value="{{.CSRF}}"><button type="submit" id="signout">Sign out</button></form>
<a class="button secondary" id="signin-again" href="/login">Sign in again</a></div>
<p class="hint">"Sign in again" uses your session at the broker (single sign-on): no password is asked. "Sign out" ends it, at the broker and at the identity provider you signed in with too.</p>
<p class="hint" id="session-watch">This page notices within a few seconds when your session ends elsewhere (signed out at the broker, at the identity provider, or by an administrator): the broker tells the app (back-channel logout).</p>
</div>
<div class="card">
<h2>ID token</h2>
<pre id="id-token-header">{{index .IDToken "Header"}}</pre>
<pre id="id-token">{{index .IDToken "Payload"}}</pre>
<h2>Access token</h2>
<pre id="access-token-header">{{index .AccessToken "Header"}}</pre>
<pre id="access-token">{{index .AccessToken "Payload"}}</pre>
</div>
<div class="card">
<h2>Call the demo API yourself</h2>
<p>The raw access token (valid until {{.AccessExpiry}}; reload this page for a fresh one):</p>
<pre class="wrap" id="access-token-raw">{{.RawAccessToken}}</pre>
<p>Paste this in a terminal{{if .Bound}} within a minute (its DPoP proof is good for one request: reload this page for another){{end}}:</p>
<pre class="wrap" id="curl">{{.Curl}}</pre>
</div>
<div class="card" id="dpop">
<h2>Proof of possession (DPoP, RFC 9449)</h2>
{{if .Bound}}<p>The app holds a private key (ECDSA P-256) that never leaves it, and signs a fresh DPoP proof for every request to the broker's token endpoint and to the API. The broker bound the access token to that key: token type <code id="token-type">{{.TokenType}}</code>, <code>cnf.jkt</code> <code id="cnf-jkt">{{.CnfJKT}}</code>; the thumbprint of the app's key is <code id="dpop-jkt">{{.AppJKT}}</code>.</p>
<p>The API accepted the token with a proof (below). Someone who copied the token, from a log or a proxy, and sends it as a bearer token without a proof:</p>
<p id="stolen-status" class="bad">{{.Stolen.Status}}</p>
<pre class="wrap" id="stolen-challenge">WWW-Authenticate: {{.Stolen.Challenge}}</pre>
<pre id="stolen-body">{{.Stolen.Body}}</pre>
{{else}}<p id="dpop-unbound">The access token is not bound to a key: the broker answered token type <code id="token-type">{{.TokenType}}</code>{{if not .HasDPoPKey}} (the app has no DPoP key){{end}}, so whoever holds it can use it.</p>{{end}}
</div>
<div class="card">
<h2>Demo API (<code>{{.APIURL}}</code>), verifying the access token locally</h2>
<p id="api-status">{{.APIStatus}}</p>
<pre id="api-body">{{.APIBody}}</pre>
</div>
<script src="/session.js" defer></script>` + pageFoot))

var errorPage = template.Must(template.New("error").Parse(pageHead + `
<div class="card">
<h1 class="bad" id="error-heading">{{.Heading}}</h1>
<p id="error">{{.Message}}</p>
{{if .Error}}<p>Error: <code id="error-code">{{.Error}}</code></p>{{end}}
{{if .Detail}}<p>The broker says: <span id="error-description">{{.Detail}}</span></p>{{end}}
<p>{{if .Retry}}<a class="button" id="retry" href="{{.Retry}}">{{.RetryText}}</a>{{end}}<a class="button secondary" href="/">Home</a></p>
</div>` + pageFoot))

// sessionScript is the signed-in page's script (/session.js): it asks
// GET /session every 1.5 s and, once the app's session has ended (a
// back-channel logout from the broker), replaces the page with a notice
// and a sign-in button. A network error or an answer it cannot read is
// asked again.
const sessionScript = `"use strict";
(() => {
  const every = 1500;
  const ended = () => {
    const card = document.createElement("div");
    card.className = "card";
    card.setAttribute("role", "status");
    const h = document.createElement("h1");
    h.id = "session-ended";
    h.textContent = "Your session was ended (signed out elsewhere)";
    const p = document.createElement("p");
    p.textContent = "You were signed out at the broker, at your identity provider or by an administrator, and the broker told this app. The tokens it held are gone.";
    const a = document.createElement("a");
    a.className = "button";
    a.id = "signin";
    a.href = "/login";
    a.textContent = "Sign in";
    const q = document.createElement("p");
    q.append(a);
    card.append(h, p, q);
    document.querySelector("main").replaceChildren(card);
    document.title = "Demo app: signed out";
  };
  const check = async () => {
    try {
      const r = await fetch("/session", {cache: "no-store", credentials: "same-origin", headers: {"Accept": "application/json"}});
      if (r.ok && (await r.json()).active === false) {
        ended();
        return;
      }
    } catch (e) {
      // The app did not answer: ask again.
    }
    setTimeout(check, every);
  };
  setTimeout(check, every);
})();
`

// serveSessionScript serves sessionScript.
func serveSessionScript(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write([]byte(sessionScript))
}
