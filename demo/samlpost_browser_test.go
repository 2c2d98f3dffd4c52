package demo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/fedbroker/fedbroker/broker"
)

// TestBrowserSAMLPostBindingRequest: a broker whose Fabrikam connector sends
// the AuthnRequest with the POST binding renders its own "Continuing
// sign-in" page, whose script (served under the broker's CSP, script-src
// 'self') posts the SAMLRequest to Fabrikam; Fabrikam's page posts the
// SAMLResponse back; the authorization code that reaches the client's
// redirect URI redeems (PKCE) for an ID token of Alice.
func TestBrowserSAMLPostBindingRequest(t *testing.T) {
	browser := newBrowser(t)
	ctx := context.Background()
	d, err := Start(ctx, Options{Host: "127.0.0.1"})
	if err != nil {
		t.Fatalf("demo.Start: %v", err)
	}
	t.Cleanup(d.Close)
	issuer := startPostBindingBroker(t, d)

	client := &http.Client{Timeout: 10 * time.Second}
	octx := oidc.ClientContext(ctx, client)
	provider, err := oidc.NewProvider(octx, issuer)
	if err != nil {
		t.Fatalf("discovery of %s: %v", issuer, err)
	}
	oc := &oauth2.Config{ClientID: "demo-app", Endpoint: provider.Endpoint(), RedirectURL: d.AppURL + "/callback", Scopes: []string{oidc.ScopeOpenID, "email"}}
	state, nonce, verifier := randomString(), randomString(), oauth2.GenerateVerifier()
	authURL := oc.AuthCodeURL(state, oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("connector_id", "fabrikam"))

	tb := newTab(t, browser, "fabrikam-post")
	tb.step("authorize at the POST-binding broker", chromedp.Navigate(authURL),
		chromedp.WaitVisible(chromedp.CSS(`input[name="user"]`)))
	at := run(tb, "Fabrikam login form location", chromedp.Location())
	tb.check("Fabrikam login form", unlessPrefix(at, d.FabrikamURL+"/", "the login form is not Fabrikam's page"))
	tb.check("SAMLRequest posted", postedField(tb.documentRequests(), issuer+"/", d.FabrikamURL+"/", "SAMLRequest"))
	tb.step("submit Fabrikam login",
		chromedp.SendKeys(chromedp.CSS(`input[name="user"]`), "alice"),
		chromedp.SendKeys(chromedp.CSS(`input[name="password"]`), "fabrikam-alice-pw"),
		chromedp.Click(chromedp.CSS(`button[type="submit"]`)),
		// The demo app did not start this request: it shows its error page
		// at its callback, with the code in the URL.
		chromedp.WaitVisible(chromedp.ID("error")))
	tb.check("SAML POST binding", samlPostedByScript(tb.documentRequests(), issuer+"/callback/fabrikam"))
	at = run(tb, "redirect URI location", chromedp.Location())
	tb.check("redirect URI", unlessPrefix(at, d.AppURL+"/callback?", "the client's redirect URI"))
	u, err := url.Parse(at)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	if q.Get("state") != state || q.Get("iss") != issuer || q.Get("code") == "" {
		t.Fatalf("authorization response %q: want state %q, iss %q and a code", u.RawQuery, state, issuer)
	}
	tok, err := oc.Exchange(octx, q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("code exchange: %v", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := provider.Verifier(&oidc.Config{ClientID: "demo-app"}).Verify(octx, raw)
	if err != nil {
		t.Fatalf("ID token: %v", err)
	}
	var claims struct {
		Email string `json:"email"`
	}
	if err := idt.Claims(&claims); err != nil {
		t.Fatal(err)
	}
	if idt.Nonce != nonce || claims.Email != "alice@example.com" {
		t.Errorf("ID token nonce %q email %q, want %q and alice@example.com", idt.Nonce, claims.Email, nonce)
	}
	for _, line := range tb.consoleLines() {
		if strings.Contains(line, "Content Security Policy") {
			t.Errorf("CSP violation: %s", line)
		}
	}
}

// startPostBindingBroker runs a second broker like the demo's, but with the
// Fabrikam connector's AuthnRequest on the POST binding, registered at
// Fabrikam as another service provider. It returns the issuer.
func startPostBindingBroker(t *testing.T, d *Demo) string {
	t.Helper()
	ctx := context.Background()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	issuer := "http://" + ln.Addr().String()
	client := &http.Client{Timeout: 10 * time.Second}
	md, err := fetch(ctx, client, d.FabrikamURL+"/metadata")
	if err != nil {
		t.Fatalf("fabrikam metadata: %v", err)
	}
	yml := brokerYAML(issuer, d.ContosoURL, string(md), d.AppURL)
	const at = "    config:\n      idp_metadata_xml:"
	if strings.Count(yml, at) != 1 {
		t.Fatalf("demo broker config changed shape: %q not found once", at)
	}
	cfg, err := parse(strings.Replace(yml, at, "    config:\n      binding: post\n      idp_metadata_xml:", 1))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	inst, err := broker.Start(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("broker: %v", err)
	}
	t.Cleanup(inst.Close)
	srv := &http.Server{Handler: inst.Server.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	}()
	t.Cleanup(func() { _ = srv.Close() })
	if err := registerSP(ctx, client, issuer+"/saml/fabrikam/metadata", d.FabrikamURL+"/services/fedbroker-post"); err != nil {
		t.Fatal(err)
	}
	return issuer
}

// postedField checks that the browser, on a page under from, posted a form
// with field to a URL under to: the page before that POST in the tab's
// document requests is from's (the broker's auto-post page ran its script;
// the test never clicks its "Continue" button).
func postedField(reqs []*network.EventRequestWillBeSent, from, to, field string) string {
	for i, r := range reqs {
		if r.Request.Method != http.MethodPost || !strings.HasPrefix(r.Request.URL, to) {
			continue
		}
		form, err := url.ParseQuery(postBody(r))
		if err != nil || form.Get(field) == "" {
			return fmt.Sprintf("POST %s carried no %s form field (err %v)", r.Request.URL, field, err)
		}
		if i == 0 || !strings.HasPrefix(reqs[i-1].Request.URL, from) {
			return fmt.Sprintf("POST %s did not follow a page under %s", r.Request.URL, from)
		}
		return ""
	}
	var seen []string
	for _, r := range reqs {
		seen = append(seen, r.Request.Method+" "+r.Request.URL)
	}
	return fmt.Sprintf("no POST to %s among the document requests %q", to, seen)
}
