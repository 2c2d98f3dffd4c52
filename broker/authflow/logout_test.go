package authflow_test

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/fedbroker/fedbroker/broker/authflow"
	"github.com/fedbroker/fedbroker/broker/oauth"
	"github.com/fedbroker/fedbroker/broker/runtime/runtimetest"
	"github.com/fedbroker/fedbroker/broker/storage"
	"github.com/fedbroker/fedbroker/broker/tokens"
	"github.com/fedbroker/fedbroker/templates"
)

const logoutURI = "http://127.0.0.1:9999/bye"

// signedIn signs alice in and returns her browser (session cookie set)
// and the session.
func (f fixture) signedIn(t *testing.T) (authflow.Browser, *storage.Session) {
	t.Helper()
	res, b, err := f.signIn(t, runtimetest.AlicePassword)
	if err != nil || res.Session == nil {
		t.Fatalf("sign-in = %+v, %v", res, err)
	}
	b.SessionID = res.Session.ID
	return b, res.Session
}

// idToken is an ID token of client app for session s (its sid).
func (f fixture) idToken(t *testing.T, s *storage.Session) string {
	t.Helper()
	cl, ok := f.Runtime.Client("app")
	if !ok {
		t.Fatal("no client app")
	}
	a := tokens.New(tokens.Deps{Issuer: runtimetest.Issuer, Keys: f.Keys, Store: f.Store, Now: f.Clock.Now})
	tok, err := a.IDToken(cl, s.Grant, "", f.Clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func (f fixture) sessionAlive(t *testing.T, s *storage.Session) bool {
	t.Helper()
	_, err := f.Store.GetSession(context.Background(), s.ID)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		t.Fatal(err)
	}
	return err == nil
}

func confirmation(t *testing.T, res authflow.Result, err error) templates.LogoutConfirmData {
	t.Helper()
	if err != nil || res.Template != "logout_confirm.html" || res.EndSession || res.Redirect != "" {
		t.Fatalf("Logout = %+v, %v; want the confirmation page", res, err)
	}
	data := res.Data.(templates.LogoutConfirmData)
	if data.CSRF == "" || data.Relay {
		t.Fatalf("confirmation data = %+v", data)
	}
	return data
}

// TestLogoutWithoutHintAsksFirst: without id_token_hint the session ends
// only with the confirmation form's token, which is bound to the session.
func TestLogoutWithoutHintAsksFirst(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	b, sess := f.signedIn(t)
	res, err := f.flow.Logout(ctx, f.Runtime, authflow.LogoutRequest{}, b)
	data := confirmation(t, res, err)
	if !f.sessionAlive(t, sess) {
		t.Fatal("asking for confirmation ended the session")
	}
	other, _ := f.signedIn(t)
	res, err = f.flow.Logout(ctx, f.Runtime, authflow.LogoutRequest{}, other)
	otherData := confirmation(t, res, err)
	for _, token := range []string{"forged", otherData.CSRF} {
		_, err = f.flow.Logout(ctx, f.Runtime, authflow.LogoutRequest{Confirm: token}, b)
		var pe *oauth.PageError
		if !errors.As(err, &pe) || pe.Status != http.StatusBadRequest || !f.sessionAlive(t, sess) {
			t.Fatalf("confirmation with token %q = %v; want a 400 page and the session kept", token, err)
		}
	}
	res, err = f.flow.Logout(ctx, f.Runtime, authflow.LogoutRequest{Confirm: data.CSRF}, b)
	if err != nil || !res.EndSession || res.Template != "logged_out.html" {
		t.Fatalf("confirmed Logout = %+v, %v", res, err)
	}
	if f.sessionAlive(t, sess) {
		t.Fatal("session alive after the confirmed logout")
	}
}

// TestLogoutWithThisSessionsHint: the ID token of this browser's session
// ends it at once and goes back to the registered URI.
func TestLogoutWithThisSessionsHint(t *testing.T) {
	f := newFixture(t)
	b, sess := f.signedIn(t)
	res, err := f.flow.Logout(context.Background(), f.Runtime, authflow.LogoutRequest{IDTokenHint: f.idToken(t, sess), PostLogoutRedirectURI: logoutURI, State: "s"}, b)
	if err != nil || !res.EndSession || res.Redirect != logoutURI+"?state=s" {
		t.Fatalf("Logout = %+v, %v; want the session ended and the redirect", res, err)
	}
	if f.sessionAlive(t, sess) {
		t.Fatal("session alive after logout")
	}
}

// TestLogoutWithAnotherSessionsHint: a genuine ID token of another session
// (the attacker's own) asks first; once confirmed, the registered redirect
// still applies.
func TestLogoutWithAnotherSessionsHint(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	_, attackerSess := f.signedIn(t)
	b, sess := f.signedIn(t)
	req := authflow.LogoutRequest{IDTokenHint: f.idToken(t, attackerSess), PostLogoutRedirectURI: logoutURI, State: "s"}
	res, err := f.flow.Logout(ctx, f.Runtime, req, b)
	data := confirmation(t, res, err)
	if !f.sessionAlive(t, sess) || !f.sessionAlive(t, attackerSess) {
		t.Fatal("another session's hint ended a session")
	}
	if data.Fields["id_token_hint"] != req.IDTokenHint || data.Fields["post_logout_redirect_uri"] != logoutURI || data.Fields["state"] != "s" {
		t.Fatalf("confirmation carries %v; want the request's parameters", data.Fields)
	}
	req.Confirm = data.CSRF
	res, err = f.flow.Logout(ctx, f.Runtime, req, b)
	if err != nil || !res.EndSession || res.Redirect != logoutURI+"?state=s" {
		t.Fatalf("confirmed Logout = %+v, %v", res, err)
	}
	if f.sessionAlive(t, sess) || !f.sessionAlive(t, attackerSess) {
		t.Fatal("the confirmed logout ended the wrong session")
	}
}

// TestLogoutWithoutSession: nothing to end. A cookie the browser did not
// send is never cleared (a cross-site POST omits the Lax cookie); a stale
// one that it did send is.
func TestLogoutWithoutSession(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	res, err := f.flow.Logout(ctx, f.Runtime, authflow.LogoutRequest{}, authflow.Browser{})
	if err != nil || res.EndSession || res.Template != "logged_out.html" {
		t.Fatalf("Logout without a cookie = %+v, %v; want the signed-out page, no cookie change", res, err)
	}
	res, err = f.flow.Logout(ctx, f.Runtime, authflow.LogoutRequest{}, authflow.Browser{SessionID: "gone"})
	if err != nil || !res.EndSession || res.Template != "logged_out.html" {
		t.Fatalf("Logout with a stale cookie = %+v, %v; want it cleared", res, err)
	}
}
