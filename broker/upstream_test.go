package broker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/google/go-cmp/cmp"

	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/keys"
	"github.com/fedbroker/fedbroker/broker/oauth"
	"github.com/fedbroker/fedbroker/connectors/testidp"
	"github.com/fedbroker/fedbroker/mapping"
)

// corpUser is the upstream account used by the oidc tests.
var corpUser = testidp.User{
	Subject:        "corp-u-1",
	Claims:         map[string]any{"email": "dana@acme.com", "email_verified": true, "name": "Dana Corp"},
	UserinfoClaims: map[string]any{"preferred_username": "dana"},
}

// slowDelay is how long a slow upstream takes to answer: well beyond the
// 1s connector timeout, short because the test IdP cannot notice a client
// giving up on a POST and its server waits for the delay on close. (A
// 300ms timeout was too close to what a loaded 2-core machine takes for a
// healthy local exchange: "expired id token" once got 502.)
const slowDelay = 3 * time.Second

// newCorpIdP starts a test OpenID Connect provider with corpUser.
func newCorpIdP(t *testing.T) *testidp.IdP {
	t.Helper()
	idp := testidp.New(testidp.Options{})
	t.Cleanup(idp.Close)
	idp.SetUser(corpUser)
	return idp
}

// corpConnector is an oidc connector "corp" at idp with a short timeout.
func corpConnector(idp *testidp.IdP, domains ...string) upstream {
	return upstream{id: "corp", typ: "oidc", name: "Corp SSO", domains: domains, config: fmt.Sprintf(`
issuer: %s
client_id: %s
client_secret: %s
userinfo: true
timeout: 1s
`, idp.URL(), idp.ClientID(), idp.ClientSecret())}
}

// es256Verifier verifies the broker's ID tokens for clientID, ES256 only.
func (h *harness) es256Verifier(clientID string) *oidc.IDTokenVerifier {
	h.t.Helper()
	p, err := oidc.NewProvider(context.Background(), h.issuer)
	if err != nil {
		h.t.Fatalf("oidc.NewProvider: %v", err)
	}
	return p.Verifier(&oidc.Config{ClientID: clientID, Now: h.clock.Now, SupportedSigningAlgs: []string{oidc.ES256}})
}

// upstreamSignIn signs in through connector and returns the tokens.
func (h *harness) upstreamSignIn(br *browser, connectorID string) (tokenResponse, url.Values) {
	h.t.Helper()
	p := newPKCE()
	params := authParams(p)
	cb := h.atUpstream(br, h.startUpstream(br, params, connectorID))
	code := h.codeFrom(br.get(cb.String()), params.Get("state"))
	tr := h.redeem(code, p)
	if tr.status != http.StatusOK || tr.IDToken == "" {
		h.t.Fatalf("redeem = %d %s %s, want 200 with an ID token", tr.status, tr.Error, tr.Description)
	}
	return tr, params
}

func TestUpstreamOIDCHappyPathAndRefresh(t *testing.T) {
	idp := newCorpIdP(t)
	h := newHarness(t, nil, nil, withUpstreams(t, []upstream{corpConnector(idp)}, nil))
	br := h.newBrowser()

	// The chooser lists the upstream; its link starts the upstream login.
	p := newPKCE()
	params := authParams(p)
	chooser := h.authorize(br, params)
	if chooser.status != http.StatusFound || chooser.location == nil {
		t.Fatalf("authorize = %d, want 302 to the chooser", chooser.status)
	}
	page := br.get(chooser.location.String())
	if page.status != http.StatusOK || !strings.Contains(page.body, "Corp SSO") || !strings.Contains(page.body, "/login/corp?req=") {
		t.Fatalf("chooser = %d, want a link to Corp SSO; body %s", page.status, page.body)
	}
	r := h.followBroker(br, br.get(h.issuer+"/login/corp?req="+chooser.location.Query().Get("req")))
	cb := h.atUpstream(br, r)
	code := h.codeFrom(br.get(cb.String()), params.Get("state"))
	tr := h.redeem(code, p)
	if tr.status != http.StatusOK {
		t.Fatalf("redeem = %d %s", tr.status, tr.Error)
	}
	tok, err := h.es256Verifier("app").Verify(context.Background(), tr.IDToken)
	if err != nil {
		t.Fatalf("ID token does not verify: %v", err)
	}
	var claims struct {
		Nonce    string   `json:"nonce"`
		Email    string   `json:"email"`
		Verified bool     `json:"email_verified"`
		Name     string   `json:"name"`
		Username string   `json:"preferred_username"`
		AMR      []string `json:"amr"`
	}
	if err := tok.Claims(&claims); err != nil {
		t.Fatal(err)
	}
	got := []any{claims.Nonce, claims.Email, claims.Verified, claims.Name, claims.Username}
	want := []any{params.Get("nonce"), "dana@acme.com", true, "Dana Corp", "dana"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ID token nonce, email, email_verified, name, preferred_username (userinfo) (-want +got):\n%s", diff)
	}
	h.wantAudit(t, "login", "corp", map[string]string{"connector_type": "oidc", "upstream_sub": corpUser.Subject})
	if tr.RefreshToken == "" {
		t.Fatal("no refresh token")
	}

	// Refresh asks the upstream again: a changed upstream name shows up.
	renamed := corpUser
	renamed.Claims = map[string]any{"email": "dana@acme.com", "email_verified": true, "name": "Dana Renamed"}
	idp.SetUser(renamed)
	rr := h.refresh(tr.RefreshToken, "app")
	if rr.status != http.StatusOK {
		t.Fatalf("refresh = %d %s %s", rr.status, rr.Error, rr.Description)
	}
	rtok, err := h.es256Verifier("app").Verify(context.Background(), rr.IDToken)
	if err != nil {
		t.Fatalf("refreshed ID token does not verify: %v", err)
	}
	if err := rtok.Claims(&claims); err != nil {
		t.Fatal(err)
	}
	if claims.Name != "Dana Renamed" {
		t.Errorf("refreshed name = %q, want %q (refresh must ask the upstream)", claims.Name, "Dana Renamed")
	}

	// A slow upstream: the refresh is temporarily unavailable, bounded by
	// the connector timeout, and the family survives.
	idp.SetDelay(slowDelay)
	start := time.Now()
	wantOAuthError(t, h.refresh(rr.RefreshToken, "app"), http.StatusServiceUnavailable, oauth.ErrTemporarilyUnavailable)
	if d := time.Since(start); d >= slowDelay-200*time.Millisecond {
		t.Errorf("refresh against a slow upstream took %v, want it bounded by the connector timeout", d)
	}
	idp.SetDelay(0)
	rr = h.refresh(rr.RefreshToken, "app")
	if rr.status != http.StatusOK {
		t.Fatalf("refresh after the upstream recovered = %d %s %s, want 200", rr.status, rr.Error, rr.Description)
	}

	// Disabled upstream: invalid_grant, and the family is gone even once
	// the user is enabled again.
	idp.DisableUser(corpUser.Subject)
	wantOAuthError(t, h.refresh(rr.RefreshToken, "app"), http.StatusBadRequest, oauth.ErrInvalidGrant)
	h.wantAudit(t, "refresh_upstream_refused", "corp", map[string]string{"client_id": "app"})
	idp.SetUser(corpUser)
	wantOAuthError(t, h.refresh(rr.RefreshToken, "app"), http.StatusBadRequest, oauth.ErrInvalidGrant)
	wantOAuthError(t, h.refresh(tr.RefreshToken, "app"), http.StatusBadRequest, oauth.ErrInvalidGrant)
}

// TestUpstreamOIDCFailures checks each upstream failure becomes an error
// page and an audit line naming the connector.
func TestUpstreamOIDCFailures(t *testing.T) {
	tests := []struct {
		name string
		// before runs before the browser goes to the upstream; after runs
		// between the upstream's answer and the callback.
		before, after func(*testidp.IdP)
		status        int
		code          string
	}{
		{"access denied", func(p *testidp.IdP) { p.SetAuthorizeError("access_denied") }, nil, http.StatusForbidden, "access_denied"},
		{"wrong nonce", nil, func(p *testidp.IdP) { p.SetTamper(testidp.Tamper{WrongNonce: true}) }, http.StatusBadRequest, "invalid_token"},
		{"expired id token", nil, func(p *testidp.IdP) { p.SetTamper(testidp.Tamper{Expired: true}) }, http.StatusBadRequest, "token_expired"},
		{"foreign key", nil, func(p *testidp.IdP) { p.SetTamper(testidp.Tamper{ForeignKey: true}) }, http.StatusBadRequest, "invalid_token"},
		{"token endpoint error", nil, func(p *testidp.IdP) { p.SetTokenError(0, "invalid_client") }, http.StatusBadGateway, "upstream_error"},
		{"upstream down", nil, func(p *testidp.IdP) { p.Close() }, http.StatusBadGateway, "upstream_unavailable"},
		{"upstream slow", nil, func(p *testidp.IdP) { p.SetDelay(slowDelay) }, http.StatusBadGateway, "upstream_unavailable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			idp := newCorpIdP(t)
			h := newHarness(t, nil, nil, withUpstreams(t, []upstream{corpConnector(idp)}, nil))
			br := h.newBrowser()
			if tt.before != nil {
				tt.before(idp)
			}
			cb := h.atUpstream(br, h.startUpstream(br, authParams(newPKCE()), "corp"))
			if tt.after != nil {
				tt.after(idp)
			}
			start := time.Now()
			r := br.get(cb.String())
			if d := time.Since(start); d >= slowDelay-200*time.Millisecond {
				t.Errorf("callback took %v, want it bounded by the connector timeout", d)
			}
			wantErrorPage(t, r, tt.status, tt.code)
			h.wantAudit(t, "login_failed", "corp", map[string]string{"code": tt.code, "connector_type": "oidc"})
			idp.SetDelay(0)

			// The local connector still signs in.
			code, _ := h.login(h.newBrowser(), authParams(newPKCE()), "alice", alicePassword)
			if code == "" {
				t.Error("local sign-in gave no code")
			}
		})
	}
}

// TestUpstreamOIDCCallbackAttacks covers callbacks the broker itself must
// refuse: another connector's state, a replay, another browser.
func TestUpstreamOIDCCallbackAttacks(t *testing.T) {
	idp := newCorpIdP(t)
	h := newHarness(t, nil, nil, withUpstreams(t, []upstream{corpConnector(idp)}, nil))

	t.Run("state for another connector", func(t *testing.T) {
		br := h.newBrowser()
		params := authParams(newPKCE())
		cb := h.atUpstream(br, h.startUpstream(br, params, "corp"))
		other := *cb
		other.Path = "/callback/backup"
		wantErrorPage(t, br.get(other.String()), http.StatusBadRequest, "state_mismatch")
		h.wantAudit(t, "login_rejected", "backup", map[string]string{"reason": "state made for another connector"})
		// The request is not spent: the right callback still works.
		h.codeFrom(br.get(cb.String()), params.Get("state"))
	})

	t.Run("replayed callback", func(t *testing.T) {
		br := h.newBrowser()
		params := authParams(newPKCE())
		cb := h.atUpstream(br, h.startUpstream(br, params, "corp"))
		h.codeFrom(br.get(cb.String()), params.Get("state"))
		before := h.auditCount("login_rejected", "corp")
		wantErrorPage(t, br.get(cb.String()), http.StatusBadRequest, "expired_request")
		if got := h.auditCount("login_rejected", "corp"); got != before+1 {
			t.Errorf("login_rejected audits for corp = %d, want %d", got, before+1)
		}
	})

	t.Run("callback in another browser", func(t *testing.T) {
		br := h.newBrowser()
		cb := h.atUpstream(br, h.startUpstream(br, authParams(newPKCE()), "corp"))
		wantErrorPage(t, h.newBrowser().get(cb.String()), http.StatusBadRequest, "browser_mismatch")
		h.wantAudit(t, "login_rejected", "corp", map[string]string{"reason": "auth request bound to another browser"})
	})
}

// TestUpstreamLoginHintRouting checks a login_hint in a connector's
// domains skips the chooser.
func TestUpstreamLoginHintRouting(t *testing.T) {
	idp := newCorpIdP(t)
	h := newHarness(t, nil, nil, withUpstreams(t, []upstream{corpConnector(idp, "acme.com")}, nil))
	br := h.newBrowser()
	params := authParams(newPKCE())
	params.Set("login_hint", "bob@ACME.com")
	r := h.authorize(br, params)
	if r.status != http.StatusFound || r.location == nil || r.location.Path != "/login/corp" {
		t.Fatalf("authorize = %d to %v, want 302 to /login/corp", r.status, r.location)
	}
	cb := h.atUpstream(br, h.followBroker(br, r))
	h.codeFrom(br.get(cb.String()), params.Get("state"))

	// A hint in no connector's domains shows the chooser.
	params = authParams(newPKCE())
	params.Set("login_hint", "eve@elsewhere.example")
	r = h.authorize(h.newBrowser(), params)
	if r.status != http.StatusFound || r.location == nil || r.location.Path != "/login" {
		t.Fatalf("authorize = %d to %v, want 302 to the chooser /login", r.status, r.location)
	}
}

// newBrokerErr builds a broker with up added and returns New's error.
func newBrokerErr(t *testing.T, up upstream) error {
	t.Helper()
	hashes, secretHash := hashOnce()
	yml := fmt.Sprintf(testConfigYAML, "http://127.0.0.1:1", hashes[0], hashes[1], hashes[2], appRedirect, appLogout, secretHash, svcRedirect)
	cfg, err := config.Parse([]byte(yml), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	withUpstreams(t, []upstream{up}, nil)(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	clk := newClock()
	store := newMemoryStore(clk)
	km, err := keys.New(ctx, store, keys.Options{Now: clk.Now, MaxTokenLifetime: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	_, err = New(ctx, cfg, Options{Storage: store, Keys: km, Now: clk.Now})
	return err
}

// TestUpstreamDiscoveryAtStart checks broker.New refuses an upstream whose
// discovery publishes another issuer, with a config problem at the
// connector's path. (An upstream that cannot be reached at start is opened
// later: TestUpstreamDownAtStart.)
func TestUpstreamDiscoveryAtStart(t *testing.T) {
	tests := []struct {
		name    string
		breakIt func(*testidp.IdP)
		want    string
	}{
		{"issuer mismatch", func(p *testidp.IdP) { p.SetIssuer("https://impostor.example") }, "impostor.example"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			idp := newCorpIdP(t)
			up := corpConnector(idp)
			tt.breakIt(idp)
			err := newBrokerErr(t, up)
			var errs config.Errors
			if !errors.As(err, &errs) {
				t.Fatalf("New() error = %v, want config.Errors", err)
			}
			var paths []string
			for _, p := range errs {
				paths = append(paths, p.Path)
			}
			if diff := cmp.Diff([]string{"connectors[2].config"}, paths); diff != "" {
				t.Errorf("problem paths (-want +got):\n%s\nerror: %v", diff, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New() error = %q, want it to mention %q", err, tt.want)
			}
		})
	}
}

// TestUpstreamGoogle covers the hosted domain allowlist and Directory
// groups through the broker.
func TestUpstreamGoogle(t *testing.T) {
	idp := testidp.New(testidp.Options{})
	t.Cleanup(idp.Close)
	saFile := filepath.Join(t.TempDir(), "sa.json")
	if err := os.WriteFile(saFile, idp.ServiceAccount("broker@acme.iam.gserviceaccount.com"), 0o600); err != nil {
		t.Fatal(err)
	}
	g := upstream{id: "gws", typ: "google", name: "Google", config: fmt.Sprintf(`
issuer: %s
client_id: %s
client_secret: %s
hosted_domains: [acme.com]
service_account_file: %s
admin_email: admin@acme.com
directory_url: %s
timeout: 2s
`, idp.URL(), idp.ClientID(), idp.ClientSecret(), saFile, idp.URL())}
	h := newHarness(t, nil, nil, withUpstreams(t, []upstream{g}, nil))
	user := func(hd string) testidp.User {
		return testidp.User{Subject: "g-1", Claims: map[string]any{"email": "gina@acme.com", "email_verified": true, "hd": hd},
			Groups: []testidp.Group{{ID: "g1", Email: "eng@acme.com"}, {ID: "g2", Email: "ops@acme.com"}}}
	}

	idp.SetUser(user("acme.com"))
	tr, _ := h.upstreamSignIn(h.newBrowser(), "gws")
	tok, err := h.es256Verifier("app").Verify(context.Background(), tr.IDToken)
	if err != nil {
		t.Fatal(err)
	}
	var claims struct {
		HD     string   `json:"hd"`
		Groups []string `json:"groups"`
	}
	if err := tok.Claims(&claims); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"eng@acme.com", "ops@acme.com"}, claims.Groups); claims.HD != "acme.com" || diff != "" {
		t.Errorf("hd = %q, want acme.com; groups from the Directory (-want +got):\n%s", claims.HD, diff)
	}

	idp.SetUser(user("evil.example"))
	br := h.newBrowser()
	cb := h.atUpstream(br, h.startUpstream(br, authParams(newPKCE()), "gws"))
	wantErrorPage(t, br.get(cb.String()), http.StatusForbidden, "domain_not_allowed")
	h.wantAudit(t, "login_failed", "gws", map[string]string{"code": "domain_not_allowed", "connector_type": "google"})

	// A Directory that refuses the lookup fails the sign-in.
	deny := denyingAPI(t)
	g.config = strings.Replace(g.config, "directory_url: "+idp.URL(), "directory_url: "+deny.URL, 1)
	h = newHarness(t, nil, nil, withUpstreams(t, []upstream{g}, nil))
	idp.SetUser(user("acme.com"))
	br = h.newBrowser()
	cb = h.atUpstream(br, h.startUpstream(br, authParams(newPKCE()), "gws"))
	wantErrorPage(t, br.get(cb.String()), http.StatusBadGateway, "upstream_error")
	h.wantAudit(t, "login_failed", "gws", map[string]string{"code": "upstream_error", "connector_type": "google"})
}

// denyingAPI is a Graph or Directory API that refuses every request.
func denyingAPI(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte(`{"error":{"code":"Authorization_RequestDenied","message":"Insufficient privileges"}}`))
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestUpstreamAzureAD covers the tenant allowlist and Graph group overage
// reaching a custom mapping.
func TestUpstreamAzureAD(t *testing.T) {
	const (
		tenantA = "11111111-1111-1111-1111-111111111111"
		tenantB = "22222222-2222-2222-2222-222222222222"
	)
	idp := testidp.New(testidp.Options{Algorithm: "RS256"})
	t.Cleanup(idp.Close)
	idp.SetIssuer(idp.URL() + "/{tenantid}/v2.0")
	entra := upstream{id: "entra", typ: "azuread", name: "Entra", mapping: "entra", config: fmt.Sprintf(`
client_id: %s
client_secret: %s
tenant: organizations
allowed_tenants: [%s]
groups: ids
login_url: %s
graph_url: %s
timeout: 5s
`, idp.ClientID(), idp.ClientSecret(), tenantA, idp.URL(), idp.URL())}
	spec := mapping.Spec{Claims: map[string]mapping.ClaimSpec{
		"entra_groups": {Expr: "sources.groups", In: "id_token"},
		"tid":          {Expr: "claims.tid"},
	}}
	h := newHarness(t, nil, nil, withUpstreams(t, []upstream{entra}, map[string]mapping.Spec{"entra": spec}))

	var groups []testidp.Group
	var want []string
	for i := range 250 {
		id := fmt.Sprintf("00000000-0000-0000-0000-%012d", i)
		groups = append(groups, testidp.Group{ID: id, DisplayName: fmt.Sprintf("group %d", i)})
		want = append(want, id)
	}
	user := func(tid string) testidp.User {
		return testidp.User{Subject: "pairwise-1", Groups: groups, Claims: map[string]any{
			"iss": idp.URL() + "/" + tid + "/v2.0", "tid": tid, "oid": "aaaaaaaa-0000-0000-0000-000000000001",
			"preferred_username": "ada@contoso.com",
			"_claim_names":       map[string]any{"groups": "src1"},
			"_claim_sources":     map[string]any{"src1": map[string]any{"endpoint": "https://graph.windows.net/x/users/y/getMemberObjects"}},
		}}
	}

	idp.SetUser(user(tenantA))
	tr, _ := h.upstreamSignIn(h.newBrowser(), "entra")
	tok, err := h.es256Verifier("app").Verify(context.Background(), tr.IDToken)
	if err != nil {
		t.Fatal(err)
	}
	var claims struct {
		Groups []string `json:"entra_groups"`
		TID    string   `json:"tid"`
	}
	if err := tok.Claims(&claims); err != nil {
		t.Fatal(err)
	}
	if claims.TID != tenantA {
		t.Errorf("tid = %q, want %q", claims.TID, tenantA)
	}
	if diff := cmp.Diff(want, claims.Groups); diff != "" {
		t.Errorf("entra_groups from Graph overage (-want +got):\n%s", diff)
	}

	idp.SetUser(user(tenantB))
	br := h.newBrowser()
	cb := h.atUpstream(br, h.startUpstream(br, authParams(newPKCE()), "entra"))
	wantErrorPage(t, br.get(cb.String()), http.StatusForbidden, "tenant_not_allowed")
	h.wantAudit(t, "login_failed", "entra", map[string]string{"code": "tenant_not_allowed", "connector_type": "azuread"})

	// A Graph that refuses the overage lookup fails the sign-in.
	deny := denyingAPI(t)
	entra.config = strings.Replace(entra.config, "graph_url: "+idp.URL(), "graph_url: "+deny.URL, 1)
	h = newHarness(t, nil, nil, withUpstreams(t, []upstream{entra}, map[string]mapping.Spec{"entra": spec}))
	idp.SetUser(user(tenantA))
	br = h.newBrowser()
	cb = h.atUpstream(br, h.startUpstream(br, authParams(newPKCE()), "entra"))
	wantErrorPage(t, br.get(cb.String()), http.StatusBadGateway, "groups_unavailable")
	h.wantAudit(t, "login_failed", "entra", map[string]string{"code": "groups_unavailable", "connector_type": "azuread"})
}

// TestUpstreamDownAtStart: a broker whose OIDC upstream cannot be reached at
// start still starts (the break-glass accounts must keep working), shows a
// readable page for that connector, and opens it once the upstream answers.
func TestUpstreamDownAtStart(t *testing.T) {
	// A listener nobody serves yet: connections hang until the connector's
	// timeout, as with an upstream that is down.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	up := upstream{id: "corp", typ: "oidc", name: "Corp SSO", config: fmt.Sprintf("issuer: http://%s\nclient_id: client\nclient_secret: secret\ntimeout: 300ms\n", addr)}
	clk := newClock()
	h := newHarness(t, nil, clk, withUpstreams(t, []upstream{up}, nil))

	br := h.newBrowser()
	r := h.startUpstream(br, authParams(newPKCE()), "corp")
	wantErrorPage(t, r, http.StatusBadGateway, "upstream_unavailable")
	if _, page := h.loginAt("local", "alice"); page.status != http.StatusSeeOther {
		t.Fatalf("local login while corp is down = %d, want 303", page.status)
	}

	idp := testidp.New(testidp.Options{Listener: ln})
	t.Cleanup(idp.Close)
	idp.SetUser(corpUser)
	clk.Advance(20 * time.Second)
	tr, _ := h.upstreamSignIn(h.newBrowser(), "corp")
	if _, err := h.es256Verifier("app").Verify(context.Background(), tr.IDToken); err != nil {
		t.Fatalf("ID token after the upstream came up: %v", err)
	}
}

// TestUpstreamRefreshWithoutIDToken: an upstream that answers a refresh
// with no id_token (OIDC Core §12.2), with userinfo off, still refreshes:
// the upstream accepted the refresh token of that account, and the
// broker keeps the claims it mapped at sign-in.
func TestUpstreamRefreshWithoutIDToken(t *testing.T) {
	idp := newCorpIdP(t)
	idp.SetRefreshIDToken(false)
	up := corpConnector(idp)
	up.config = strings.Replace(up.config, "userinfo: true", "userinfo: false", 1)
	h := newHarness(t, nil, nil, withUpstreams(t, []upstream{up}, nil))
	tr, _ := h.upstreamSignIn(h.newBrowser(), "corp")
	for i := range 2 {
		r := h.refresh(tr.RefreshToken, "app")
		if r.status != http.StatusOK {
			t.Fatalf("refresh %d = %d %s %s, want 200", i+1, r.status, r.Error, r.Description)
		}
		tok, err := h.es256Verifier("app").Verify(context.Background(), r.IDToken)
		if err != nil {
			t.Fatal(err)
		}
		var c struct {
			Email string `json:"email"`
		}
		if err := tok.Claims(&c); err != nil || c.Email != "dana@acme.com" {
			t.Errorf("refresh %d: email %q, want the sign-in's dana@acme.com", i+1, c.Email)
		}
		tr = r
	}
	idp.DisableUser(corpUser.Subject)
	if r := h.refresh(tr.RefreshToken, "app"); r.status != http.StatusBadRequest {
		t.Errorf("refresh of a disabled upstream account = %d, want 400", r.status)
	}
}
