package broker

import (
	"crypto/x509"
	"encoding/pem"
	"html"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// samlLogoutHarness is samlHarness with an SP signing key (single logout
// messages must be signed) and app's back-channel logout URI.
func samlLogoutHarness(t *testing.T) (*harness, *samlUpstream, *logoutApp) {
	t.Helper()
	su := newSAMLUpstream(t)
	md := su.do(t, http.MethodGet, "/metadata", "")
	certFile, keyFile := writeSPKeyPair(t)
	app := newLogoutApp(t)
	h := newHarness(t, nil, nil, withLogoutURIs(map[string]string{"app": app.URL()}, nil, withUpstreams(t, []upstream{{id: "fab", typ: "saml", name: "Fabrikam",
		config: "idp_metadata_xml: " + yamlQuote(string(md)) + "\nsp_certificate_file: " + yamlQuote(certFile) + "\nsp_key_file: " + yamlQuote(keyFile)}}, nil)))
	sp := h.newBrowser().get(h.issuer + "/saml/fab/metadata")
	if sp.status != http.StatusOK || !strings.Contains(sp.body, "SingleLogoutService") {
		t.Fatalf("SP metadata = %d without SingleLogoutService: %s", sp.status, sp.body)
	}
	su.do(t, http.MethodPut, "/services/broker", sp.body)
	return h, su, app
}

// writeSPKeyPair writes an RSA key and certificate (the SAML IdP test key
// pair serves as the SP's too) as PEM files.
func writeSPKeyPair(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, cert := samlIdPKey()
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "sp.crt"), filepath.Join(dir, "sp.key")
	write := func(name, typ string, der []byte) {
		if err := os.WriteFile(name, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(certFile, "CERTIFICATE", cert.Raw)
	write(keyFile, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(key))
	return certFile, keyFile
}

// samlSignIn signs alice in at "fab" for app and returns the tokens.
func (h *harness) samlSignIn(t *testing.T, su *samlUpstream, br *browser) tokenResponse {
	t.Helper()
	p := newPKCE()
	params := authParams(p)
	post := su.start(t, h, br, params)
	code := h.codeFrom(br.postForm(post.action, post.form), params.Get("state"))
	tr := h.redeem(code, p)
	if tr.status != http.StatusOK {
		t.Fatalf("redeem = %d %s", tr.status, tr.Error)
	}
	return tr
}

// toBrokerLogout turns the IdP's answer (a redirect, or an auto-posting
// form) into the browser's request to the broker's logout endpoint of
// "fab", sent with br.
func (h *harness) toBrokerLogout(t *testing.T, br *browser, resp *http.Response) response {
	t.Helper()
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	want := h.issuer + "/logout/fab"
	if loc := resp.Header.Get("Location"); resp.StatusCode == http.StatusFound && strings.HasPrefix(loc, want+"?") {
		return br.get(loc)
	}
	if m := samlFormAction.FindSubmatch(body); resp.StatusCode == http.StatusOK && m != nil && html.UnescapeString(string(m[1])) == want {
		form := url.Values{}
		for _, f := range samlFormInput.FindAllSubmatch(body, -1) {
			form.Set(string(f[1]), html.UnescapeString(string(f[2])))
		}
		return br.postForm(want, form)
	}
	t.Fatalf("the IdP did not send the browser to %s: %s %v\n%s", want, resp.Status, resp.Header, body)
	return response{}
}

// TestUpstreamSAMLSingleLogout runs SAML single logout through the broker
// against crewjam/saml's IdP. SP-initiated: signing out at the app ends the
// broker session, sends a signed LogoutRequest to the IdP, which ends its
// session and answers; the broker goes on to the app. IdP-initiated: the
// IdP's logout sends the browser with a signed LogoutRequest; the broker
// ends the session from that IdP session, tells the app by back-channel
// logout, and answers with a signed LogoutResponse the IdP accepts.
func TestUpstreamSAMLSingleLogout(t *testing.T) {
	h, su, app := samlLogoutHarness(t)

	t.Run("sp-initiated", func(t *testing.T) {
		br := h.newBrowser()
		tr := h.samlSignIn(t, su, br)
		sub, sid := h.idClaims(t, "app", tr.IDToken)
		lo := br.get(h.issuer + "/logout?" + url.Values{"id_token_hint": {tr.IDToken}, "post_logout_redirect_uri": {appLogout}, "state": {"s-sp"}}.Encode())
		if lo.status != http.StatusFound || lo.location == nil || !strings.HasPrefix(lo.location.String(), su.srv.URL+"/slo?") {
			t.Fatalf("logout = %d %v, want a redirect to the IdP's SLO endpoint", lo.status, lo.location)
		}
		h.checkLogoutToken(t, app.wait(t, 5*time.Second), "app", sub, sid)
		resp, err := su.client.Get(lo.location.String())
		if err != nil {
			t.Fatal(err)
		}
		done := h.toBrokerLogout(t, br, resp)
		if done.status != http.StatusFound || done.location == nil || done.location.String() != appLogout+"?state=s-sp" {
			t.Fatalf("back at the broker = %d %v %s, want %s?state=s-sp", done.status, done.location, done.body, appLogout)
		}
		// The IdP's session ended: signing in again asks for the password.
		r := h.startUpstream(br, authParams(newPKCE()), "fab")
		again, err := su.client.Get(r.location.String())
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(again.Body)
		again.Body.Close()
		if strings.Contains(string(body), "SAMLResponse") || !strings.Contains(string(body), `name="password"`) {
			t.Errorf("the IdP signed the browser in again without a password after single logout: %s", body)
		}
	})

	t.Run("idp-initiated", func(t *testing.T) {
		br := h.newBrowser()
		tr := h.samlSignIn(t, su, br)
		sub, sid := h.idClaims(t, "app", tr.IDToken)
		resp, err := su.client.Get(su.srv.URL + "/logout")
		if err != nil {
			t.Fatal(err)
		}
		r := h.toBrokerLogout(t, br, resp)
		h.checkLogoutToken(t, app.wait(t, 5*time.Second), "app", sub, sid)
		if rr := h.refresh(tr.RefreshToken, "app"); rr.status != http.StatusBadRequest {
			t.Errorf("refresh after the IdP's logout = %d, want 400", rr.status)
		}
		// The broker's answer goes back to the IdP, which accepts it.
		var back *http.Response
		switch {
		case r.status == http.StatusFound && r.location != nil && strings.HasPrefix(r.location.String(), su.srv.URL+"/"):
			back, err = su.client.Get(r.location.String())
		case r.status == http.StatusOK:
			m := samlFormAction.FindStringSubmatch(r.body)
			if m == nil {
				t.Fatalf("broker answer has no form: %s", r.body)
			}
			form := url.Values{}
			for _, f := range samlFormInput.FindAllStringSubmatch(r.body, -1) {
				form.Set(f[1], html.UnescapeString(f[2]))
			}
			back, err = su.client.PostForm(html.UnescapeString(m[1]), form)
		default:
			t.Fatalf("broker answer to the IdP's LogoutRequest = %d %v %s", r.status, r.location, r.body)
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(back.Body)
		back.Body.Close()
		if back.StatusCode != http.StatusOK || !strings.Contains(string(body), "You have been logged out.") || strings.Contains(string(body), "could not be confirmed") {
			t.Errorf("the IdP did not accept the broker's LogoutResponse: %s\n%s", back.Status, body)
		}
		h.wantAudit(t, "upstream_logout", "fab", nil)
	})
}
