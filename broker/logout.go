package broker

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/fedbroker/fedbroker/templates"
)

// handleLogout is RP-initiated logout (OpenID Connect RP-Initiated Logout
// 1.0). The SSO session ends in every case; the browser is sent on to
// post_logout_redirect_uri only when an unexpired ID token of ours, issued to
// the client that registered that URI, comes with it.
func (s *Server) handleLogout(c echo.Context) error {
	r := c.Request()
	r.Body = http.MaxBytesReader(c.Response(), r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		return badRequestPage(errInvalidRequest, "The sign-out request is malformed.")
	}
	form := r.Form
	hint := form.Get("id_token_hint")
	redirect := form.Get("post_logout_redirect_uri")
	state := form.Get("state")

	var target string
	if redirect != "" {
		clientID, err := s.verifyIDTokenHint(hint)
		if err != nil {
			s.auditEvent("logout_redirect_refused", "reason", err.Error())
			return badRequestPage(errInvalidRequest, "The application asked to send you somewhere after signing out, but did not prove it may. You have not been redirected.")
		}
		if want := form.Get("client_id"); want != "" && want != clientID {
			return badRequestPage(errInvalidRequest, "The sign-out request names two different applications.")
		}
		cl, ok := s.rt.Load().clients[clientID]
		if !ok || !cl.logouts[redirect] {
			return badRequestPage(errInvalidRequest, "The application asked to send you to an address it has not registered for sign-out.")
		}
		u, err := url.Parse(redirect)
		if err != nil {
			return badRequestPage(errInvalidRequest, "The sign-out redirect address is not valid.")
		}
		if state != "" {
			q := u.Query()
			q.Set("state", state)
			u.RawQuery = q.Encode()
		}
		target = u.String()
	}
	if ck, err := c.Cookie(s.sessions.session); err == nil && ck.Value != "" && len(ck.Value) <= 128 {
		if sess, err := s.store.GetSession(r.Context(), ck.Value); err == nil {
			s.auditEvent("logout", "sub", sess.Subject, "sid", sess.PublicID)
		}
		if err := s.store.DeleteSession(r.Context(), ck.Value); err != nil {
			return err
		}
	}
	s.sessions.clear(c, s.sessions.session)
	if target != "" {
		return c.Redirect(redirectStatus(c), target)
	}
	return s.render(c, http.StatusOK, "logged_out.html", templates.LoggedOutData{Page: s.page("Signed out")})
}

var (
	errHintMissing = errors.New("id_token_hint missing")
	errHintInvalid = errors.New("id_token_hint invalid")
)

// verifyIDTokenHint checks an ID token of ours (signature by a published
// key, typ JWT, issuer, not expired) and returns its audience.
func (s *Server) verifyIDTokenHint(hint string) (string, error) {
	if hint == "" {
		return "", errHintMissing
	}
	if len(hint) > 16<<10 {
		return "", errHintInvalid
	}
	payload, typ, err := s.keys.Verify(hint)
	if err != nil {
		return "", errors.Join(errHintInvalid, err)
	}
	if typ != "JWT" {
		return "", errHintInvalid
	}
	var claims struct {
		Iss string          `json:"iss"`
		Aud json.RawMessage `json:"aud"`
		Exp int64           `json:"exp"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		return "", errHintInvalid
	}
	if claims.Iss != s.issuer || !time.Unix(claims.Exp, 0).After(s.now()) {
		return "", errHintInvalid
	}
	var aud string
	if err := json.Unmarshal(claims.Aud, &aud); err != nil || aud == "" {
		return "", errHintInvalid
	}
	return aud, nil
}
