package demo

import (
	"html/template"
	"net/http"

	"github.com/crewjam/saml"
	"github.com/crewjam/saml/samlidp"
)

// Contoso keeps single sign-on sessions of its own: a sign-in through it
// while its session is live asks no password. Signing out of the demo app
// ends that session too (the broker's upstream logout), and so does
// signing out at Contoso, which tells the broker (back-channel logout).
//
// Fabrikam still asks for the password on every sign-in that reaches it
// (fabrikamSessions): switching between Fabrikam's demo accounts needs no
// sign-out first.

// fabrikamSessions is Fabrikam's session provider: samlidp's own (its
// password check, cross-origin check and sessions), except that a Fabrikam
// session is never resumed: every AuthnRequest is treated as ForceAuthn,
// so the login form is shown until the person posts their credentials.
type fabrikamSessions struct{ *samlidp.Server }

// GetSession implements saml.SessionProvider.
func (s fabrikamSessions) GetSession(w http.ResponseWriter, r *http.Request, req *saml.IdpAuthnRequest) *saml.Session {
	if !(r.Method == http.MethodPost && r.PostForm.Get("user") != "") {
		force := true
		req.Request.ForceAuthn = &force
	}
	return s.Server.GetSession(w, r, req)
}

// fabrikamLoginPage is Fabrikam's login form, in the look of the broker's
// pages (templates/static/style.css): a card with a heading and labelled
// fields, and a mobile viewport. samlidp renders it with .Toast (the
// error of a failed attempt), .URL (where the form posts), .SAMLRequest and
// .RelayState.
var fabrikamLoginPage = template.Must(template.New("fabrikam-login").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="same-origin">
<title>Sign in to Fabrikam</title>
<style>
*,*::before,*::after{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:#f4f5f7;color:#1d2330;margin:0;padding:0 1rem;line-height:1.45}
.card{max-width:26rem;margin:4rem auto;background:#fff;padding:2rem;border-radius:8px;box-shadow:0 1px 4px rgba(0,0,0,.12);overflow-wrap:anywhere}
.brand{font-weight:600;color:#8a3b12;letter-spacing:.04em;text-transform:uppercase;font-size:.8rem;margin:0 0 .4rem}
h1{font-size:1.4rem;margin-top:0}
label{display:block;margin:.8rem 0 .3rem}
input[type=text],input[type=password]{width:100%;max-width:100%;padding:.5rem;border:1px solid #b8bfcc;border-radius:4px}
button{display:inline-block;max-width:100%;margin-top:1rem;padding:.6rem 1.2rem;background:#8a3b12;color:#fff;border:0;border-radius:4px;cursor:pointer}
.error{color:#a3161a}.hint{color:#5c6475;font-size:.85rem}
button,input{font:inherit}
@media (max-width:30rem){body{padding:0}.card{margin:1rem .75rem;padding:1.25rem;border-radius:6px}}
</style>
</head>
<body>
<main class="card">
<p class="brand">Fabrikam</p>
<h1>Sign in to Fabrikam</h1>
{{if .Toast}}<p class="error" role="alert">{{.Toast}}.</p>{{end}}
<form method="post" action="{{.URL}}">
<input type="hidden" name="SAMLRequest" value="{{.SAMLRequest}}">
<input type="hidden" name="RelayState" value="{{.RelayState}}">
<label for="user">Username</label>
<input id="user" name="user" type="text" autocomplete="username" autofocus required>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Sign in</button>
</form>
<p class="hint">Fabrikam is the demo's SAML 2.0 identity provider (crewjam/saml).</p>
</main>
</body>
</html>
`))
