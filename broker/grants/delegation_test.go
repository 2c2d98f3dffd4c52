package grants_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/grants"
	"github.com/fedbroker/fedbroker/broker/oauth"
	"github.com/fedbroker/fedbroker/broker/storage"
)

const tokenExchange = config.GrantTokenExchange

// svcDelegates lets client svc use token exchange (delegation).
func svcDelegates(c *config.Config) {
	for i := range c.Clients {
		if c.Clients[i].ID == "svc" {
			c.Clients[i].GrantTypes = append(c.Clients[i].GrantTypes, config.GrantTokenExchange)
		}
	}
}

// svcDelegatesAnyAudience is svcDelegates with the per-client opt-out.
func svcDelegatesAnyAudience(c *config.Config) {
	svcDelegates(c)
	for i := range c.Clients {
		if c.Clients[i].ID == "svc" {
			c.Clients[i].DelegateAnyAudience = true
		}
	}
}

// TestDelegationNeedsATokenForTheClient (finding 4): by default a client
// exchanges only access tokens issued to it (client_id) or addressed to
// it (aud); any other is invalid_request with a fixed description, and
// audited. delegate_any_audience lifts that.
func TestDelegationNeedsATokenForTheClient(t *testing.T) {
	alice := storage.Grant{Subject: "sub-alice", Scopes: []string{"openid", "email"}}
	mint := func(t *testing.T, f fixture, client string, aud ...string) string {
		t.Helper()
		g := alice
		g.ClientID = client
		at, _, err := f.a.AccessToken(f.Client(t, client), g, aud, f.Clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		return at
	}
	exchange := func(f fixture, subject string) error {
		_, err := f.g.Token(context.Background(), f.Runtime, f.Client(t, "svc"), grants.Request{
			GrantType: tokenExchange, SubjectToken: subject, SubjectTokenType: oauth.TokenTypeAccessToken, Audience: []string{"billing.acme.com"},
		})
		return err
	}

	f := newFixtureWith(t, "", svcDelegates)
	for _, tc := range []struct {
		name   string
		client string
		aud    []string
	}{
		{"issued to it", "svc", []string{"api.acme.com"}},
		{"addressed to it", "app", []string{"api.acme.com", "svc"}},
		{"addressed to it alone", "app", []string{"svc"}},
	} {
		if err := exchange(f, mint(t, f, tc.client, tc.aud...)); err != nil {
			t.Errorf("%s: exchange = %v, want a token", tc.name, err)
		}
	}
	foreign := mint(t, f, "app", "api.acme.com")
	err := exchange(f, foreign)
	var oe *oauth.Error
	if !errors.As(err, &oe) || oe.Code != oauth.ErrInvalidRequest || oe.Status != 400 {
		t.Fatalf("exchange of another client's token = %v, want 400 invalid_request", err)
	}
	if strings.Contains(oe.Description, "app") || strings.Contains(oe.Description, "api.acme.com") {
		t.Errorf("description %q names the token's client or audience", oe.Description)
	}
	if !strings.Contains(f.audit.String(), `"token_exchange_rejected"`) || !strings.Contains(f.audit.String(), `"token_client_id":"app"`) {
		t.Errorf("refusal not audited: %s", f.audit.String())
	}

	// The opt-out.
	optOut := newFixtureWith(t, "", svcDelegatesAnyAudience)
	if err := exchange(optOut, mint(t, optOut, "app", "api.acme.com")); err != nil {
		t.Errorf("exchange with delegate_any_audience = %v, want a token", err)
	}
}
