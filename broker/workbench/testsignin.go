package workbench

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/fedbroker/fedbroker/broker/runtime"
	"github.com/fedbroker/fedbroker/broker/storage"
)

// TestSignInTTL is how long the login URL of a test sign-in may wait to
// be opened.
const TestSignInTTL = 5 * time.Minute

// StartTestSignIn starts a test sign-in through connector connID, asking
// the upstream for scopes (the groups scope, say, makes some connectors
// fetch groups). It stores a start record under a random, unguessable
// handle and returns the handle, which only the console keeps, and the
// public login URL to open in a new tab. The first browser that opens it
// takes the record (authflow), so the URL works once; the sign-in then
// ends on a page, with the upstream identity in a result record for
// TestSignInResult, and never with a session, a code or a link.
func (w *Workbench) StartTestSignIn(ctx context.Context, connID string, scopes []string) (handle, loginURL string, err error) {
	if _, ok := w.deps.Runtime().Connector(connID); !ok {
		return "", "", fmt.Errorf("no connector %q in the running configuration", connID)
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", err
	}
	handle = base64.RawURLEncoding.EncodeToString(b[:])
	now := w.deps.Now()
	err = w.deps.Store.CreateAuthRequest(ctx, storage.AuthRequest{
		ID:     handle,
		Scopes: dedupe(scopes),
		MaxAge: -1,
		Expiry: now.Add(TestSignInTTL),
		Test:   &storage.TestSignIn{Start: true, Connector: connID, Started: now},
	})
	if err != nil {
		return "", "", err
	}
	return handle, w.deps.Issuer + "/login/" + url.PathEscape(connID) + "?req=" + url.QueryEscape(handle), nil
}

// ErrTestPending means the test sign-in has not finished yet.
var ErrTestPending = errors.New("the test sign-in has not finished yet")

// ErrTestGone means the test sign-in expired, or its handle is unknown.
var ErrTestGone = errors.New("the test sign-in expired or is unknown: start another")

// TestSignInResult returns the result of the test sign-in started as
// handle: the upstream identity (Result), or why it failed (Failure).
// ErrTestPending while it runs.
func (w *Workbench) TestSignInResult(ctx context.Context, handle string) (*storage.TestSignIn, error) {
	if handle == "" || len(handle) > 64 {
		return nil, ErrTestGone
	}
	rec, err := w.deps.Store.GetAuthRequest(ctx, storage.TestSignInResultID(handle))
	if err == nil && rec.Test != nil && (rec.Test.Result != nil || rec.Test.Failure != "") && rec.Expiry.After(w.deps.Now()) {
		return rec.Test, nil
	}
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return nil, err
	}
	start, err := w.deps.Store.GetAuthRequest(ctx, handle)
	switch {
	case err == nil && start.Test != nil && start.Test.Start && !start.Expiry.After(w.deps.Now()):
		return nil, ErrTestGone
	case err == nil && start.Test != nil && start.Test.Start:
		return nil, ErrTestPending // not opened yet
	case errors.Is(err, storage.ErrNotFound):
		// Opened: the sign-in runs under another id until it ends.
		return nil, ErrTestPending
	case err != nil:
		return nil, err
	}
	return nil, ErrTestGone
}

// InputOf is the test sign-in's upstream identity as a sample input for
// connector t.Connector.
func InputOf(t *storage.TestSignIn) runtime.MappingInput {
	in := runtime.MappingInput{Connector: t.Connector}
	if r := t.Result; r != nil {
		in.UpstreamSubject, in.Claims, in.Sources = r.UpstreamSubject, r.Claims, r.Sources
	}
	return in
}
