package broker

import (
	"errors"
	"net/http"
	"net/url"

	"github.com/labstack/echo/v4"

	"github.com/fedbroker/fedbroker/broker/storage"
	"github.com/fedbroker/fedbroker/connectors"
	"github.com/fedbroker/fedbroker/mapping"
)

var errMappingFailed = &pageError{Status: http.StatusForbidden, Heading: "Sign-in refused", Message: "Your account could not be mapped to a sign-in for this organisation. Contact your administrator.", Code: "mapping_error"}

// finishLogin runs after a connector vouched for an identity: it maps the
// upstream claims, resolves links, starts the SSO session and sends the
// browser back to the client with a one-time code.
func (s *Server) finishLogin(c echo.Context, rt *runtime, cl *client, conn *connector, req storage.AuthRequest, id connectors.Identity) error {
	ctx := c.Request().Context()
	if id.Subject == "" {
		return s.upstreamFailure(conn, req, &connectors.UserError{Code: "invalid_response", Message: "The sign-in provider did not say who you are."})
	}
	res, err := conn.mapping.Evaluate(ctx, mapping.Input{
		ConnectorID:     conn.id,
		ConnectorType:   conn.typ,
		UpstreamSubject: id.Subject,
		Claims:          id.Claims,
		Sources:         id.Sources,
	})
	var rej *mapping.Rejection
	switch {
	case errors.As(err, &rej):
		s.metrics.signIn(conn.id, "rejected")
		s.auditEvent("login_rejected", "connector", conn.id, "client_id", cl.ID, "upstream_sub", id.Subject, "rule", rej.Rule, "message", rej.Message)
		return &pageError{Status: http.StatusForbidden, Heading: "Sign-in refused", Message: rej.Message, Code: errAccessDenied}
	case err != nil:
		s.metrics.signIn(conn.id, "mapping_error")
		s.log.Warn("mapping failed", "connector", conn.id, "upstream_sub", id.Subject, "err", err)
		s.auditEvent("login_rejected", "connector", conn.id, "client_id", cl.ID, "upstream_sub", id.Subject, "reason", "mapping error")
		return errMappingFailed
	}
	subject, err := s.resolveLink(c, rt, conn, id, res)
	if err != nil {
		return err
	}
	// The auth request is used once: a replayed callback ends here.
	if _, err := s.store.TakeAuthRequest(ctx, req.ID); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			s.auditEvent("login_rejected", "connector", conn.id, "client_id", cl.ID, "reason", "auth request already used")
			return errRequestGone
		}
		return err
	}
	now := s.now()
	grant := storage.Grant{
		ClientID:          cl.ID,
		Subject:           subject,
		Scopes:            req.Scopes,
		Nonce:             req.Nonce,
		AuthTime:          now,
		AMR:               amrFor(conn),
		ConnectorID:       conn.id,
		UpstreamSubject:   id.Subject,
		ConnectorData:     s.seal.seal(id.ConnectorData),
		IDTokenClaims:     res.IDToken,
		AccessTokenClaims: res.AccessToken,
	}
	sess := storage.Session{
		ID:          randomToken(32),
		PublicID:    randomToken(16),
		Subject:     subject,
		ConnectorID: conn.id,
		Grant:       grant,
		AuthTime:    now,
		Expiry:      now.Add(rt.tokens.Session),
	}
	grant.SessionID = sess.PublicID
	sess.Grant.SessionID = sess.PublicID
	if err := s.store.CreateSession(ctx, sess); err != nil {
		return err
	}
	s.sessions.set(c, s.sessions.session, sess.ID, sess.Expiry)
	s.metrics.signIn(conn.id, "success")
	s.health.record(conn.id, now, "")
	s.auditEvent("login", "connector", conn.id, "connector_type", conn.typ, "client_id", cl.ID, "sub", subject, "upstream_sub", id.Subject, "sid", sess.PublicID)
	return s.issueCode(c, rt, req, grant)
}

// issueCodeFromSession answers /authorize from a live SSO session.
func (s *Server) issueCodeFromSession(c echo.Context, rt *runtime, cl *client, req storage.AuthRequest, sess storage.Session) error {
	grant := sess.Grant
	grant.ClientID = cl.ID
	grant.Scopes = req.Scopes
	grant.Nonce = req.Nonce
	grant.AuthTime = sess.AuthTime
	grant.SessionID = sess.PublicID
	s.auditEvent("sso", "connector", sess.ConnectorID, "client_id", cl.ID, "sub", sess.Subject, "sid", sess.PublicID)
	return s.issueCode(c, rt, req, grant)
}

// issueCode stores a one-time code for grant and redirects to the client.
func (s *Server) issueCode(c echo.Context, rt *runtime, req storage.AuthRequest, grant storage.Grant) error {
	code := randomToken(32)
	ac := storage.AuthCode{
		ClientID:            req.ClientID,
		RedirectURI:         req.RedirectURI,
		CodeChallenge:       req.CodeChallenge,
		CodeChallengeMethod: req.CodeChallengeMethod,
		FamilyID:            randomToken(16),
		Grant:               grant,
		Expiry:              s.now().Add(rt.tokens.AuthCode),
	}
	if err := s.store.CreateCode(c.Request().Context(), code, ac); err != nil {
		return err
	}
	u, err := url.Parse(req.RedirectURI)
	if err != nil {
		return badRequestPage(errInvalidRequest, "The application's redirect address is not valid.")
	}
	q := u.Query()
	q.Set("code", code)
	if req.State != "" {
		q.Set("state", req.State)
	}
	q.Set("iss", s.issuer)
	u.RawQuery = q.Encode()
	return c.Redirect(redirectStatus(c), u.String())
}

// resolveLink turns the mapping's subject and link key into the internal
// subject. Identities with the same link key from connectors in one links
// group share the subject of the first; a key held through a connector not
// allowed to link with this one is a conflict and refuses the sign-in.
func (s *Server) resolveLink(c echo.Context, rt *runtime, conn *connector, id connectors.Identity, res mapping.Result) (string, error) {
	if res.LinkKey == "" || len(rt.linkGroups[conn.id]) == 0 {
		return res.Subject, nil
	}
	link, _, err := s.store.CreateLink(c.Request().Context(), storage.Link{
		Key:             res.LinkKey,
		Subject:         res.Subject,
		ConnectorID:     conn.id,
		UpstreamSubject: id.Subject,
		Created:         s.now(),
	})
	if err != nil {
		return "", err
	}
	if link.Subject == res.Subject {
		return res.Subject, nil
	}
	if link.ConnectorID == conn.id && link.UpstreamSubject == id.Subject {
		return link.Subject, nil
	}
	if link.ConnectorID != conn.id && rt.linkable(link.ConnectorID, conn.id) {
		s.auditEvent("link", "connector", conn.id, "upstream_sub", id.Subject, "sub", link.Subject, "linked_connector", link.ConnectorID)
		return link.Subject, nil
	}
	s.metrics.signIn(conn.id, "link_conflict")
	s.auditEvent("login_rejected", "connector", conn.id, "upstream_sub", id.Subject, "reason", "link conflict", "linked_connector", link.ConnectorID)
	return "", &pageError{Status: http.StatusConflict, Heading: "Account conflict", Message: "Another account already uses your identity here, and the two cannot be merged automatically. Contact your administrator.", Code: "link_conflict"}
}

func amrFor(conn *connector) []string {
	if _, ok := conn.impl.(connectors.PasswordConnector); ok {
		return []string{"pwd"}
	}
	return []string{"fed"}
}

// auditEvent writes one audit line. Callers pass identifiers only, never a
// secret, code, token or password.
func (s *Server) auditEvent(event string, kv ...any) {
	s.audit.Info(event, append([]any{"audit", true}, kv...)...)
}
