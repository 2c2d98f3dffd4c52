package ldap_test

import (
	"context"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/fedbroker/fedbroker/connectors"
	"github.com/fedbroker/fedbroker/connectors/ldap"
	"github.com/fedbroker/fedbroker/connectors/local"
)

// BenchmarkLDAPLogin measures one sign-in against a local slapd, on the
// connections the connector keeps (the default) and, for the /no-pool
// cases, on a new connection each (pool_size: 0), beside the local
// connector's bcrypt check at the default cost.
func BenchmarkLDAPLogin(b *testing.B) {
	d := directory(b)
	search := searchConfig(d.Addr)
	search.GroupSearch, search.MemberOfAttr = nil, ""
	withGroups := searchConfig(d.Addr)
	direct := searchConfig(d.Addr)
	direct.BindDN, direct.BindPassword, direct.UserSearch, direct.GroupSearch = "", "", ldap.UserSearch{}, nil
	direct.UserDNTemplate = "uid={username},ou=people,dc=acme,dc=com"
	startTLS := searchConfig(d.Addr)
	startTLS.TLS, startTLS.RootCA = ldap.TLSStartTLS, d.CA.CertFile
	noPool := func(c *ldap.Config) *ldap.Config {
		cc, zero := *c, 0
		cc.PoolSize = &zero
		return &cc
	}
	for _, bc := range []struct {
		name       string
		c          connectors.PasswordConnector
		user, pass string
	}{
		{"search-then-bind", open(b, search), "alice", "alice-pw"},
		{"search-then-bind/no-pool", open(b, noPool(search)), "alice", "alice-pw"},
		{"search-then-bind/wrong-password", open(b, search), "alice", "wrong"},
		{"search-then-bind/unknown-user", open(b, search), "mallory", "wrong"},
		{"search-then-bind+groups", open(b, withGroups), "alice", "alice-pw"},
		{"search-then-bind+groups/no-pool", open(b, noPool(withGroups)), "alice", "alice-pw"},
		{"search-then-bind+groups+starttls", open(b, startTLS), "alice", "alice-pw"},
		{"search-then-bind+groups+starttls/no-pool", open(b, noPool(startTLS)), "alice", "alice-pw"},
		{"direct-bind", open(b, direct), "alice", "alice-pw"},
		{"local-bcrypt-cost10", openLocal(b), "alice", "alice-pw"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			want := bc.pass == "alice-pw"
			for b.Loop() {
				if _, ok, err := bc.c.Login(context.Background(), connectors.Scopes{}, bc.user, bc.pass); ok != want || err != nil {
					b.Fatalf("Login: ok %v, err %v", ok, err)
				}
			}
		})
	}
}

func openLocal(b *testing.B) connectors.PasswordConnector {
	h, err := bcrypt.GenerateFromPassword([]byte("alice-pw"), bcrypt.DefaultCost)
	if err != nil {
		b.Fatal(err)
	}
	c := &local.Config{Users: []local.User{{Username: "alice", PasswordHash: string(h)}}}
	impl, err := c.Open(context.Background(), "local", connectors.Options{})
	if err != nil {
		b.Fatal(err)
	}
	return impl.(connectors.PasswordConnector)
}
