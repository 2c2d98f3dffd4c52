package oidc

import (
	"context"
	"testing"

	"github.com/fedbroker/fedbroker/connectors"
	"github.com/fedbroker/fedbroker/connectors/testidp"
)

func TestCheckHealth(t *testing.T) {
	idp := testidp.New(testidp.Options{})
	cfg := Config{Issuer: idp.Issuer(), ClientID: idp.ClientID(), ClientSecret: idp.ClientSecret()}
	impl, err := cfg.Open(context.Background(), "up", connectors.Options{CallbackURL: "http://127.0.0.1/callback/up"})
	if err != nil {
		t.Fatal(err)
	}
	c := impl.(*Connector)
	if err := c.CheckHealth(context.Background()); err != nil {
		t.Fatalf("CheckHealth() with the upstream up = %v", err)
	}
	idp.Close()
	if err := c.CheckHealth(context.Background()); err == nil {
		t.Fatal("CheckHealth() with the upstream down = nil, want an error")
	}
}
