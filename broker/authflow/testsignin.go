package authflow

import (
	"context"
	"net/http"
	"time"

	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/oauth"
	"github.com/fedbroker/fedbroker/broker/runtime"
	"github.com/fedbroker/fedbroker/broker/storage"
	"github.com/fedbroker/fedbroker/connectors"
	"github.com/fedbroker/fedbroker/templates"
)

// Test sign-ins (storage.TestSignIn) are started by the admin console's
// mapping workbench, which stores a start record under a random handle
// and opens the public /login/{connector}?req=HANDLE in a new tab. Here
// they run through the real connector like any sign-in, except at both
// ends:
//
//   - the first browser to open the handle takes the start record (once:
//     TakeAuthRequest) and gets a new sign-in record bound to it
//     (claimTestSignIn), so the handle cannot be replayed;
//   - Finish hands the upstream identity to the console in a result
//     record and shows a page (finishTest) before anything else it does:
//     no mapping side effect, no link, no SSO session, no code. The
//     records name no client and no redirect URI, and are never reachable
//     from /authorize or the token endpoint, so a test sign-in cannot
//     become a real one.

// testClient stands in for the client of a test sign-in, which has none:
// it allows every connector and names no redirect URI.
var testClient = &runtime.Client{Client: config.Client{Name: "the mapping workbench (test only)"}}

// testResultTTL is how long a test sign-in's result waits for the console.
const testResultTTL = 10 * time.Minute

// claimTestSignIn turns start, the start record of a test sign-in stored
// under reqID, the handle in the login URL the console opened
// (start.Test.Start is set), into a sign-in bound to this browser. next is
// the new request id; b is the browser with its binding id, which setID
// (when not "") the response must set.
func (f *Flow) claimTestSignIn(ctx context.Context, rt *runtime.Runtime, connID, reqID string, start storage.AuthRequest, b Browser) (next string, nb Browser, setID string, err error) {
	if !start.Expiry.After(f.now()) {
		return "", b, "", errRequestGone
	}
	if start.Test.Connector != connID {
		f.audit.Event("test_signin_rejected", "connector", connID, "reason", "test sign-in started for another connector")
		return "", b, "", errConnectorNotAllowed
	}
	if _, err := f.store.TakeAuthRequest(ctx, reqID); err != nil {
		if isNotFound(err) {
			return "", b, "", errRequestGone
		}
		return "", b, "", err
	}
	var res Result
	id := b.ensureID(&res)
	now := f.now()
	req := storage.AuthRequest{
		ID:             oauth.RandomToken(32),
		Scopes:         start.Scopes,
		MaxAge:         -1,
		BrowserBinding: storage.Hash(id),
		Expiry:         now.Add(rt.Tokens.AuthRequest),
		Test:           &storage.TestSignIn{Handle: reqID, Connector: connID, Started: start.Test.Started},
	}
	if err := f.store.CreateAuthRequest(ctx, req); err != nil {
		return "", b, "", err
	}
	f.audit.Event("test_signin_opened", "connector", connID)
	return req.ID, b, res.BrowserID, nil
}

// finishTest ends a test sign-in once connector conn vouched for id: the
// identity goes to the console's result record, and the browser sees a
// page. It is the first thing Finish does for a test request.
func (f *Flow) finishTest(ctx context.Context, conn *runtime.Connector, req storage.AuthRequest, id connectors.Identity) (Result, error) {
	if req.Test.Start || req.Test.Handle == "" {
		return Result{}, errRequestGone
	}
	if _, err := f.store.TakeAuthRequest(ctx, req.ID); err != nil {
		if isNotFound(err) {
			f.audit.Event("test_signin_rejected", "connector", conn.ID, "reason", "test sign-in already used")
			return Result{}, errRequestGone
		}
		return Result{}, err
	}
	now := f.now()
	result := storage.AuthRequest{
		ID:     storage.TestSignInResultID(req.Test.Handle),
		MaxAge: -1,
		Expiry: now.Add(testResultTTL),
		Test: &storage.TestSignIn{Connector: conn.ID, Started: req.Test.Started, Result: &storage.TestSignInResult{
			UpstreamSubject: id.Subject, Claims: id.Claims, Sources: id.Sources, UpstreamSID: id.SessionID, Finished: now,
		}},
	}
	// A failure recorded by an earlier attempt of this sign-in gives way.
	_, _ = f.store.TakeAuthRequest(ctx, result.ID)
	if err := f.store.CreateAuthRequest(ctx, result); err != nil {
		return Result{}, err
	}
	f.audit.Event("test_signin", "connector", conn.ID, "connector_type", conn.Type, "upstream_sub", id.Subject)
	return page(http.StatusOK, "test_signin_done.html", templates.TestSignInData{Page: f.pages.Page("Test sign-in complete"), ConnectorName: conn.Name, UpstreamSubject: id.Subject}), nil
}

// failTest records, for the console, why the test sign-in req ended
// without an identity (the connector's error, or a cancel).
func (f *Flow) failTest(ctx context.Context, connID string, req storage.AuthRequest, why string) {
	if req.Test == nil || req.Test.Handle == "" {
		return
	}
	id := storage.TestSignInResultID(req.Test.Handle)
	_, _ = f.store.TakeAuthRequest(ctx, id)
	_ = f.store.CreateAuthRequest(ctx, storage.AuthRequest{
		ID:     id,
		MaxAge: -1,
		Expiry: f.now().Add(testResultTTL),
		Test:   &storage.TestSignIn{Connector: connID, Started: req.Test.Started, Failure: why},
	})
	f.audit.Event("test_signin_failed", "connector", connID, "reason", why)
}

// cancelTest ends test sign-in req at the person's request.
func (f *Flow) cancelTest(ctx context.Context, rt *runtime.Runtime, req storage.AuthRequest) error {
	if _, err := f.store.TakeAuthRequest(ctx, req.ID); err != nil {
		if isNotFound(err) {
			return errRequestGone
		}
		return err
	}
	f.failTest(ctx, req.Test.Connector, req, "cancelled in the sign-in tab")
	name := req.Test.Connector
	if conn, ok := rt.Connector(name); ok {
		name = conn.Name
	}
	return &oauth.PageError{Status: http.StatusOK, Heading: "Test sign-in cancelled", Message: "The test sign-in with " + name + " was cancelled. You can close this tab.", Code: "test_signin_cancelled"}
}
