package authflow

import (
	"context"
	"errors"
	"net/http"
	"net/url"

	"github.com/fedbroker/fedbroker/broker/oauth"
	"github.com/fedbroker/fedbroker/broker/runtime"
	"github.com/fedbroker/fedbroker/broker/storage"
	"github.com/fedbroker/fedbroker/connectors"
	"github.com/fedbroker/fedbroker/mapping"
)

// Finish runs after connector conn (opened as impl) vouched for identity
// id: it maps the upstream claims, resolves links, consumes the auth
// request, starts the SSO session and sends the browser back to the client
// with a one-time code. It is where every login ends.
func (f *Flow) Finish(ctx context.Context, rt *runtime.Runtime, cl *runtime.Client, conn *runtime.Connector, impl connectors.Connector, req storage.AuthRequest, id connectors.Identity) (Result, error) {
	if req.Test != nil {
		// A test sign-in from the console: no mapping, link, session or
		// code, ever (testsignin.go).
		return f.finishTest(ctx, conn, req, id)
	}
	if id.Subject == "" {
		return Result{}, f.upstreamFailure(conn, req, &connectors.UserError{Code: "invalid_response", Message: "The sign-in provider did not say who you are."})
	}
	res, err := conn.Mapping.Evaluate(ctx, mapping.Input{
		ConnectorID:     conn.ID,
		ConnectorType:   conn.Type,
		UpstreamSubject: id.Subject,
		Claims:          id.Claims,
		Sources:         id.Sources,
	})
	var rej *mapping.Rejection
	switch {
	case errors.As(err, &rej):
		f.metrics.SignIn(conn.ID, "rejected")
		f.audit.Event("login_rejected", "connector", conn.ID, "client_id", cl.ID, "upstream_sub", id.Subject, "rule", rej.Rule, "message", rej.Message)
		return Result{}, &oauth.PageError{Status: http.StatusForbidden, Heading: "Sign-in refused", Message: rej.Message, Code: oauth.ErrAccessDenied}
	case err != nil:
		f.metrics.SignIn(conn.ID, "mapping_error")
		f.log.Warn("mapping failed", "connector", conn.ID, "upstream_sub", id.Subject, "err", err)
		f.audit.Event("login_rejected", "connector", conn.ID, "client_id", cl.ID, "upstream_sub", id.Subject, "reason", "mapping error")
		return Result{}, errMappingFailed
	}
	subject, err := f.resolveLink(ctx, rt, conn, id, res)
	if err != nil {
		return Result{}, err
	}
	// The auth request is used once: a replayed callback ends here.
	if _, err := f.store.TakeAuthRequest(ctx, req.ID); err != nil {
		if isNotFound(err) {
			f.audit.Event("login_rejected", "connector", conn.ID, "client_id", cl.ID, "reason", "auth request already used")
			return Result{}, errRequestGone
		}
		return Result{}, err
	}
	now := f.now()
	sess := storage.Session{
		ID:          oauth.RandomToken(32),
		PublicID:    oauth.RandomToken(16),
		Subject:     subject,
		ConnectorID: conn.ID,
		AuthTime:    now,
		Expiry:      now.Add(rt.Tokens.Session),
		Created:     now,
		UpstreamSID: id.SessionID,
		Clients:     []string{cl.ID},
		LastUsed:    now,
	}
	grant := storage.Grant{
		ClientID:          cl.ID,
		Subject:           subject,
		Scopes:            req.Scopes,
		Nonce:             req.Nonce,
		AuthTime:          now,
		AMR:               runtime.AMR(impl),
		ConnectorID:       conn.ID,
		UpstreamSubject:   id.Subject,
		SessionID:         sess.PublicID,
		ConnectorData:     f.sealer.Seal(id.ConnectorData, sess.PublicID),
		IDTokenClaims:     res.IDToken,
		AccessTokenClaims: res.AccessToken,
		NoRefresh:         id.NoRefresh,
		RefreshUntil:      id.RefreshUntil,
	}
	sess.Grant = grant
	if len(id.LogoutData) > 0 {
		sess.LogoutData = f.sealer.Seal(id.LogoutData, sess.PublicID)
	}
	if err := f.store.CreateSession(ctx, sess); err != nil {
		return Result{}, err
	}
	f.metrics.SignIn(conn.ID, "success")
	f.health.Record(conn.ID, now, "")
	f.audit.Event("login", "connector", conn.ID, "connector_type", conn.Type, "client_id", cl.ID, "sub", subject, "upstream_sub", id.Subject, "sid", sess.PublicID)
	if req.Device != nil {
		// Started from the device verification page (device.go).
		return f.finishDevice(ctx, cl, req, grant, &sess)
	}
	out, err := f.issueCode(ctx, rt, req, grant)
	if err != nil {
		return Result{}, err
	}
	out.Session = &sess
	return out, nil
}

// codeFromSession answers the authorization request req from a live SSO
// session, which the caller has touched for cl (storage.TouchSession).
func (f *Flow) codeFromSession(ctx context.Context, rt *runtime.Runtime, cl *runtime.Client, req storage.AuthRequest, sess storage.Session) (Result, error) {
	grant := sess.Grant
	grant.ClientID = cl.ID
	grant.Scopes = req.Scopes
	grant.Nonce = req.Nonce
	grant.AuthTime = sess.AuthTime
	grant.SessionID = sess.PublicID
	f.audit.Event("sso", "connector", sess.ConnectorID, "client_id", cl.ID, "sub", sess.Subject, "sid", sess.PublicID)
	return f.issueCode(ctx, rt, req, grant)
}

// issueCode stores a one-time code for grant and sends the browser back to
// the client with it, its state and `iss` (RFC 9207).
func (f *Flow) issueCode(ctx context.Context, rt *runtime.Runtime, req storage.AuthRequest, grant storage.Grant) (Result, error) {
	u, err := url.Parse(req.RedirectURI)
	if err != nil {
		return Result{}, oauth.BadRequestPage(oauth.ErrInvalidRequest, "The application's redirect address is not valid.")
	}
	code := oauth.RandomToken(32)
	// The code is bound to the dpop_jkt of its request, if any (RFC 9449
	// §10); grant is this code's copy, never the session's.
	grant.DPoPJKT = req.DPoPJKT
	ac := storage.AuthCode{
		ClientID:            req.ClientID,
		RedirectURI:         req.RedirectURI,
		CodeChallenge:       req.CodeChallenge,
		CodeChallengeMethod: req.CodeChallengeMethod,
		FamilyID:            oauth.RandomToken(16),
		Grant:               grant,
		Expiry:              f.now().Add(rt.Tokens.AuthCode),
		Created:             f.now(),
	}
	if err := f.store.CreateCode(ctx, code, ac); err != nil {
		return Result{}, err
	}
	q := u.Query()
	q.Set("code", code)
	if req.State != "" {
		q.Set("state", req.State)
	}
	q.Set("iss", f.issuer)
	u.RawQuery = q.Encode()
	return redirect(u.String()), nil
}

// resolveLink turns the mapping's subject and link key into the internal
// subject. Identities with the same link key from connectors in one links
// group share the subject of the first; a key held through a connector not
// allowed to link with this one is a conflict and refuses the sign-in.
func (f *Flow) resolveLink(ctx context.Context, rt *runtime.Runtime, conn *runtime.Connector, id connectors.Identity, res mapping.Result) (string, error) {
	if res.LinkKey == "" || !rt.Links(conn.ID) {
		return res.Subject, nil
	}
	link, _, err := f.store.CreateLink(ctx, storage.Link{
		Key:             res.LinkKey,
		Subject:         res.Subject,
		ConnectorID:     conn.ID,
		UpstreamSubject: id.Subject,
		Created:         f.now(),
	})
	if err != nil {
		return "", err
	}
	switch subject, outcome := rt.LinkedSubject(conn.ID, id.Subject, res.Subject, link); outcome {
	case runtime.LinkOther:
		f.audit.Event("link", "connector", conn.ID, "upstream_sub", id.Subject, "sub", link.Subject, "linked_connector", link.ConnectorID)
		return subject, nil
	case runtime.LinkSame, runtime.LinkOwn:
		return subject, nil
	}
	f.metrics.SignIn(conn.ID, "link_conflict")
	f.audit.Event("login_rejected", "connector", conn.ID, "upstream_sub", id.Subject, "reason", "link conflict", "linked_connector", link.ConnectorID)
	return "", &oauth.PageError{Status: http.StatusConflict, Heading: "Account conflict", Message: "Another account already uses your identity here, and the two cannot be merged automatically. Contact your administrator.", Code: "link_conflict"}
}
