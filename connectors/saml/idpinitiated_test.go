package saml

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/crewjam/saml"

	"github.com/fedbroker/fedbroker/connectors"
)

// portalLogin signs alice in at the IdP, then opens the IdP's portal tile
// (an IdP-initiated login to the SP registered as "broker") and returns
// the form the IdP posts to the ACS.
func (ti *testIdP) portalLogin(t *testing.T) url.Values {
	t.Helper()
	ti.put(t, "/shortcuts/portal", `{"service_provider":"`+testEntity+`"}`)
	resp, err := ti.client.PostForm(ti.srv.URL+"/login", url.Values{"user": {"alice"}, "password": {"hunter2"}})
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	resp, err = ti.client.Get(ti.srv.URL + "/login/portal")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte(`action="`+testACS+`"`)) {
		t.Fatalf("portal tile: %s: no form posting to the ACS: %s", resp.Status, body)
	}
	acs := hiddenFields(body)
	if acs.Get("SAMLResponse") == "" {
		t.Fatalf("portal tile: no SAMLResponse: %s", body)
	}
	return acs
}

func acsPost(form url.Values) *http.Request {
	r := httptest.NewRequest(http.MethodPost, testACS, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return r
}

// TestIDPInitiatedSAMLIdP signs in from crewjam/saml's IdP portal (an
// unsolicited response over real HTTP): accepted only with idp_initiated,
// once.
func TestIDPInitiatedSAMLIdP(t *testing.T) {
	for _, on := range []bool{true, false} {
		name := "idp_initiated set"
		if !on {
			name = "idp_initiated unset"
		}
		t.Run(name, func(t *testing.T) {
			ti := newTestIdP(t)
			cfg := Config{IDPMetadataURL: ti.srv.URL + "/metadata"}
			if on {
				cfg.IDPInitiated = &IDPInitiated{ClientID: "app", RedirectURI: "https://app.test/cb", Scopes: []string{"openid", "email"}}
			}
			ctx := context.Background()
			impl, err := cfg.Open(ctx, testID, connectors.Options{HTTPClient: ti.client, CallbackURL: testACS, BaseURL: testBaseURL, Now: time.Now, ReplayCache: &memReplay{}})
			if err != nil {
				t.Fatalf("Open() error = %v", err)
			}
			conn := impl.(*Connector)
			_, md, err := conn.Metadata(ctx)
			if err != nil {
				t.Fatal(err)
			}
			ti.put(t, "/services/broker", string(md))
			acs := ti.portalLogin(t)

			id, err := conn.HandlePOST(ctx, connectors.Scopes{}, nil, acsPost(acs))
			if !on {
				wantCode(t, err, CodeUnsolicited)
				return
			}
			if err != nil {
				t.Fatalf("HandlePOST() of an IdP-initiated response error = %v", err)
			}
			if id.Subject != "alice@acme.com" {
				t.Errorf("Subject = %q, want alice@acme.com", id.Subject)
			}
			_, err = conn.HandlePOST(ctx, connectors.Scopes{}, nil, acsPost(acs))
			wantCode(t, err, CodeReplayed)

			// A genuine IdP-initiated response is not an answer to a
			// request this browser started.
			_, st, err := conn.LoginRequest(ctx, connectors.Scopes{}, testACS, "relay-1")
			if err != nil {
				t.Fatal(err)
			}
			acs = ti.portalLogin(t)
			acs.Set("RelayState", "relay-1")
			_, err = conn.HandlePOST(ctx, connectors.Scopes{}, st, acsPost(acs))
			wantCode(t, err, CodeRequestMismatch)
		})
	}
}

// TestIDPInitiatedChecks: an unsolicited response gets every check a
// solicited one does.
func TestIDPInitiatedChecks(t *testing.T) {
	f := newFixture(t, Config{IDPInitiated: &IDPInitiated{ClientID: "app", RedirectURI: "https://app.test/cb"}})
	tests := []struct {
		name   string
		mutate func(s *responseSpec)
		code   string
	}{
		{"unsigned", func(s *responseSpec) { s.assertionKey = nil }, CodeSignatureInvalid},
		{"signed by an unknown key", func(s *responseSpec) { k := otherKey(); s.assertionKey = &k }, CodeSignatureInvalid},
		{"other audience", func(s *responseSpec) {
			s.mutateAssertion = func(a *saml.Assertion) {
				a.Conditions.AudienceRestrictions[0].Audience.Value = "https://other.test"
			}
		}, CodeAudienceMismatch},
		{"other destination", func(s *responseSpec) {
			s.mutateResponse = func(r *saml.Response) { r.Destination = "https://other.test/acs" }
		}, CodeDestinationMismatch},
		{"expired", func(s *responseSpec) {
			s.mutateAssertion = func(a *saml.Assertion) {
				a.Conditions.NotOnOrAfter = f.now.Add(-10 * time.Minute)
			}
		}, CodeExpired},
		{"bearer confirmation expired", func(s *responseSpec) {
			s.mutateAssertion = func(a *saml.Assertion) {
				a.Subject.SubjectConfirmations[0].SubjectConfirmationData.NotOnOrAfter = f.now.Add(-10 * time.Minute)
			}
		}, CodeExpired},
		{"response answers a request", func(s *responseSpec) {
			s.mutateResponse = func(r *saml.Response) { r.InResponseTo = "id-some-request" }
		}, CodeRequestMismatch},
		{"assertion answers a request", func(s *responseSpec) { s.requestID = "id-some-request" }, CodeRequestMismatch},
		{"other recipient", func(s *responseSpec) {
			s.mutateAssertion = func(a *saml.Assertion) {
				a.Subject.SubjectConfirmations[0].SubjectConfirmationData.Recipient = "https://other.test/acs"
			}
		}, CodeRecipientMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := defaultSpec("")
			tt.mutate(&spec)
			_, err := f.post(t, nil, f.build(t, spec), "")
			wantCode(t, err, tt.code)
		})
	}
	t.Run("accepted once", func(t *testing.T) {
		resp := f.build(t, defaultSpec(""))
		if _, err := f.post(t, nil, resp, "https://portal.test/whatever"); err != nil {
			t.Fatalf("HandlePOST() error = %v", err)
		}
		_, err := f.post(t, nil, resp, "")
		wantCode(t, err, CodeReplayed)
	})
}

func TestUnsolicitedTarget(t *testing.T) {
	f := newFixture(t, Config{})
	if _, _, _, ok := f.conn.UnsolicitedTarget(); ok {
		t.Error("UnsolicitedTarget() ok without idp_initiated")
	}
	g := newFixture(t, Config{IDPInitiated: &IDPInitiated{ClientID: "app", RedirectURI: "https://app.test/cb"}})
	cl, ru, sc, ok := g.conn.UnsolicitedTarget()
	if !ok || cl != "app" || ru != "https://app.test/cb" || !slices.Equal(sc, []string{"openid"}) {
		t.Errorf("UnsolicitedTarget() = %q, %q, %v, %v; want app, https://app.test/cb, [openid], true", cl, ru, sc, ok)
	}
	h := newFixture(t, Config{IDPInitiated: &IDPInitiated{ClientID: "app", RedirectURI: "https://app.test/cb", Scopes: []string{"openid", "email"}}})
	_, _, sc, _ = h.conn.UnsolicitedTarget()
	sc[0] = "changed"
	if _, _, again, _ := h.conn.UnsolicitedTarget(); !slices.Equal(again, []string{"openid", "email"}) {
		t.Errorf("UnsolicitedTarget() scopes = %v after the caller changed its copy", again)
	}
}
