package broker

import (
	"html"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// samlIdPInitiatedHarness is a broker whose saml connector "fab" sends
// IdP-initiated sign-ins to target (the YAML of idp_initiated), registered
// at a fresh IdP with a portal tile "portal" for it.
func samlIdPInitiatedHarness(t *testing.T, target string) (*harness, *samlUpstream) {
	t.Helper()
	su := newSAMLUpstream(t)
	md := su.do(t, http.MethodGet, "/metadata", "")
	cfg := "idp_metadata_xml: " + yamlQuote(string(md))
	if target != "" {
		cfg += "\nidp_initiated: " + target
	}
	h := newHarness(t, nil, nil, withUpstreams(t, []upstream{{id: "fab", typ: "saml", name: "Fabrikam", config: cfg}}, nil))
	sp := h.newBrowser().get(h.issuer + "/saml/fab/metadata")
	if sp.status != http.StatusOK {
		t.Fatalf("SP metadata = %d", sp.status)
	}
	su.do(t, http.MethodPut, "/services/broker", sp.body)
	su.do(t, http.MethodPut, "/shortcuts/portal", `{"service_provider":"`+h.issuer+`/saml/fab"}`)
	return h, su
}

// portal signs alice in at the IdP and opens its portal tile: the IdP
// answers with the unsolicited response it posts to the broker's ACS.
func (su *samlUpstream) portal(t *testing.T, h *harness) samlPost {
	t.Helper()
	su.do(t, http.MethodPost, "/login", url.Values{"user": {"alice"}, "password": {"hunter2"}}.Encode())
	resp, err := su.client.Get(su.srv.URL + "/login/portal")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	action := samlFormAction.FindSubmatch(body)
	if resp.StatusCode != http.StatusOK || action == nil || html.UnescapeString(string(action[1])) != h.issuer+"/callback/fab" {
		t.Fatalf("portal tile = %s, no form posting to the broker's ACS: %s", resp.Status, body)
	}
	form := url.Values{}
	for _, m := range samlFormInput.FindAllSubmatch(body, -1) {
		form.Set(string(m[1]), html.UnescapeString(string(m[2])))
	}
	if form.Get("SAMLResponse") == "" {
		t.Fatalf("portal tile form has no SAMLResponse: %s", body)
	}
	return samlPost{action: h.issuer + "/callback/fab", form: form}
}

// TestUpstreamSAMLIdPInitiated: a portal tile at the IdP signs the person
// in to the configured client, in a browser that started nothing, once.
func TestUpstreamSAMLIdPInitiated(t *testing.T) {
	h, su := samlIdPInitiatedHarness(t, `{client_id: svc, redirect_uri: "`+svcRedirect+`", scopes: [openid, email]}`)
	post := su.portal(t, h)
	br := h.newBrowser()
	r := br.postForm(post.action, post.form)
	if r.status != http.StatusSeeOther || r.location == nil || !strings.HasPrefix(r.location.String(), svcRedirect+"?") {
		t.Fatalf("IdP-initiated post = %d %v, want a redirect to %s; body %s", r.status, r.location, svcRedirect, r.body)
	}
	q := r.location.Query()
	if q.Get("code") == "" || q.Get("iss") != h.issuer || q.Has("state") {
		t.Fatalf("redirect %s: want a code, iss and no state", r.location)
	}
	tr := h.token(url.Values{"grant_type": {"authorization_code"}, "code": {q.Get("code")}, "redirect_uri": {svcRedirect}}, "svc", svcSecret)
	if tr.status != http.StatusOK || tr.IDToken == "" {
		t.Fatalf("redeem = %d %s %s", tr.status, tr.Error, tr.Description)
	}
	if tr.Scope != "openid email" {
		t.Errorf("scope = %q, want the configured openid email", tr.Scope)
	}
	h.wantAudit(t, "login", "fab", map[string]string{"connector_type": "saml", "client_id": "svc", "upstream_sub": "alice@acme.com"})
	if !h.signedIn(br) {
		t.Error("no SSO session after an IdP-initiated sign-in")
	}

	// The same response again, from any browser, is refused.
	wantErrorPage(t, h.newBrowser().postForm(post.action, post.form), http.StatusBadRequest, "assertion_replayed")
	// A sign-in the broker started still needs its own response.
	br2 := h.newBrowser()
	start := su.start(t, h, br2, url.Values{"client_id": {"svc"}, "redirect_uri": {svcRedirect}, "response_type": {"code"}, "scope": {"openid"}, "state": {"s1"}})
	other := su.portal(t, h)
	other.form.Set("RelayState", start.form.Get("RelayState"))
	wantErrorPage(t, br2.postForm(other.action, other.form), http.StatusBadRequest, "request_mismatch")
}

// TestUpstreamSAMLIdPInitiatedRefused: without idp_initiated an
// unsolicited response is refused as before, and a target the client
// configuration does not allow is refused with a page that names no
// detail.
func TestUpstreamSAMLIdPInitiatedRefused(t *testing.T) {
	tests := []struct {
		name, target string
		status       int
		code         string
	}{
		{"not configured", "", http.StatusBadRequest, "expired_request"},
		{"public client", `{client_id: app, redirect_uri: "` + appRedirect + `"}`, http.StatusInternalServerError, "idp_initiated_misconfigured"},
		{"unknown client", `{client_id: nobody, redirect_uri: "` + svcRedirect + `"}`, http.StatusInternalServerError, "idp_initiated_misconfigured"},
		{"unregistered redirect", `{client_id: svc, redirect_uri: "https://evil.example.com/cb"}`, http.StatusInternalServerError, "idp_initiated_misconfigured"},
		{"scope not allowed", `{client_id: svc, redirect_uri: "` + svcRedirect + `", scopes: [openid, nonsense]}`, http.StatusInternalServerError, "idp_initiated_misconfigured"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, su := samlIdPInitiatedHarness(t, tt.target)
			post := su.portal(t, h)
			wantErrorPage(t, h.newBrowser().postForm(post.action, post.form), tt.status, tt.code)
			if got := h.auditCount("login_rejected", "fab"); got == 0 {
				t.Errorf("no login_rejected audit naming fab; audit:\n%s", h.audit.String())
			}
		})
	}
}
