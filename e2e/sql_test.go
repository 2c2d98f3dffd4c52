package e2e

import (
	"context"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// durableState is what a test keeps from before a crash, to check after it
// that nothing was lost or resurrected.
type durableState struct {
	session   *loginSteps // a browser with an SSO session
	idToken   string      // an ID token issued before the crash
	current   string      // the current refresh token of a live family
	rotated   string      // a refresh token of that family, rotated away
	revokedRT string      // a refresh token whose family was revoked
	revokedAT string      // an access token revoked through /revoke
	liveAT    string      // an access token that was not
}

// makeDurableState signs in and leaves a session, a live family with a
// rotated token, a revoked family and a revoked access token.
func makeDurableState(t *testing.T, issuer string) durableState {
	t.Helper()
	var st durableState
	ls := &loginSteps{}
	if err := ls.authorize(issuer); err != nil {
		t.Fatal(err)
	}
	code, err := ls.submit(alicePassword)
	if err != nil {
		t.Fatal(err)
	}
	first, err := redeem(issuer, code, ls.p)
	if err != nil || first.status != http.StatusOK {
		t.Fatalf("redeem = %+v, %v", first, err)
	}
	st.session, st.idToken, st.rotated = ls, first.IDToken, first.RefreshToken
	next, err := refresh(issuer, first.RefreshToken)
	if err != nil || next.status != http.StatusOK {
		t.Fatalf("refresh = %+v, %v", next, err)
	}
	st.current, st.liveAT = next.RefreshToken, next.AccessToken
	revoked := fullLogin(t, issuer)
	if code, body, err := revoke(issuer, revoked.RefreshToken); err != nil || code != http.StatusOK {
		t.Fatalf("revoke refresh = %d %s, %v", code, body, err)
	}
	st.revokedRT = revoked.RefreshToken
	at := fullLogin(t, issuer)
	if code, body, err := revoke(issuer, at.AccessToken); err != nil || code != http.StatusOK {
		t.Fatalf("revoke access token = %d %s, %v", code, body, err)
	}
	st.revokedAT = at.AccessToken
	return st
}

// checkDurableState checks, after a crash and restart, that every record
// and key survived and every decision still holds.
func checkDurableState(t *testing.T, issuer string, st durableState) {
	t.Helper()
	ctx := context.Background()
	p, err := oidc.NewProvider(ctx, issuer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Verifier(&oidc.Config{ClientID: "app"}).Verify(ctx, st.idToken); err != nil {
		t.Errorf("an ID token issued before the crash no longer verifies (keys lost?): %v", err)
	}
	if code, m, err := introspect(issuer, st.liveAT); err != nil || code != http.StatusOK || m["active"] != true {
		t.Errorf("introspect a live access token from before the crash = %d %v, %v; want active", code, m, err)
	}
	if code, m, err := introspect(issuer, st.revokedAT); err != nil || code != http.StatusOK || m["active"] != false {
		t.Errorf("introspect an access token revoked before the crash = %d %v, %v; want active:false", code, m, err)
	}
	if tr, err := refresh(issuer, st.revokedRT); err != nil || tr.Error != "invalid_grant" {
		t.Errorf("refresh of a family revoked before the crash = %+v, %v; want invalid_grant", tr, err)
	}
	// The SSO session: a new authorization request signs in without the
	// login form.
	pg, err := st.session.b.get(authorizeURL(issuer, "local", newPKCE()))
	if err != nil || pg.location == nil || !strings.HasPrefix(pg.location.String(), appRedirect) || pg.location.Query().Get("code") == "" {
		t.Errorf("authorize with the session from before the crash = %d %v, %v; want a redirect to the app with a code", pg.status, pg.location, err)
	}
	// The live family rotates; the token it rotated away stays dead (and,
	// being reuse, revokes the family: checked last).
	if tr, err := refresh(issuer, st.current); err != nil || tr.status != http.StatusOK {
		t.Errorf("refresh of the live family after the crash = %+v, %v; want 200", tr, err)
	}
	if tr, err := refresh(issuer, st.rotated); err != nil || tr.Error != "invalid_grant" {
		t.Errorf("refresh with a token rotated away before the crash = %+v, %v; want invalid_grant", tr, err)
	}
}

// loadInBackground runs fedbroker-load's refresh flow against targets for
// 3 s; wait returns how many operations succeeded, failing the test if
// none did (the test kills what the tool talks to, so errors are
// expected).
func loadInBackground(t *testing.T, targets string) (wait func() int) {
	t.Helper()
	var out strings.Builder
	cmd := exec.Command(filepath.Join(binDir, "fedbroker-load"), "-flow", "refresh", "-target", targets,
		"-concurrency", "4", "-duration", "3s", "-public-client", "app", "-redirect-uri", appRedirect, "-user", "alice", "-password", alicePassword)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return func() int {
		t.Helper()
		_ = cmd.Wait()
		m := opsLine.FindStringSubmatch(out.String())
		if m == nil {
			t.Fatalf("fedbroker-load printed no ops line:\n%s", out.String())
		}
		ops, _ := strconv.Atoi(m[1])
		if ops == 0 {
			t.Fatalf("fedbroker-load made no operation before the crash:\n%s", out.String())
		}
		return ops
	}
}

// TestSQLiteSurvivesSIGKILL: a broker on SQLite, SIGKILLed in the middle of
// the load tool and started again, keeps every session, family, revocation
// and key.
func TestSQLiteSurvivesSIGKILL(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fedbroker.db")
	r := startBroker(t, brokerConfig{SQLitePath: path, SignInBurst: 100000})
	st := makeDurableState(t, r.URL)
	wait := loadInBackground(t, r.URL)
	time.Sleep(1500 * time.Millisecond)
	r.Kill()
	wait()
	if err := r.startReady(20 * time.Second); err != nil {
		t.Fatalf("restart on the same SQLite file: %v\n%s", err, r.log())
	}
	checkDurableState(t, r.URL, st)
	if strings.Contains(r.log(), "storage lost its state") || strings.Contains(r.log(), "storage rolled back") {
		t.Errorf("a durable store was taken for a lost one:\n%s", r.log())
	}
}
