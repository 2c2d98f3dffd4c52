package ldap

import (
	"context"
	"testing"

	"github.com/fedbroker/fedbroker/connectors"
	"github.com/fedbroker/fedbroker/connectors/ldap/slapdtest"
)

// TestPooledConnectionBoundAsService asks the directory who each kept
// connection is bound as (RFC 4532 Who am I?) after a sign-in, a wrong
// password, an unknown user and a refresh: always the service account,
// never the person who signed in, never nobody.
func TestPooledConnectionBoundAsService(t *testing.T) {
	const service = "cn=svc,dc=acme,dc=com"
	d := slapdtest.Start(t, slapdtest.Options{LDIF: `dn: dc=acme,dc=com
objectClass: dcObject
objectClass: organization
dc: acme
o: Acme

dn: cn=svc,dc=acme,dc=com
objectClass: inetOrgPerson
cn: svc
sn: service
userPassword: ` + slapdtest.SSHA("svc-pw") + `

dn: uid=dana,dc=acme,dc=com
objectClass: inetOrgPerson
uid: dana
cn: Dana
sn: D
userPassword: ` + slapdtest.SSHA("dana-pw") + `
`})
	cfg := &Config{
		Host: d.Addr, TLS: TLSNone, BindDN: service, BindPassword: "svc-pw",
		UserSearch: UserSearch{BaseDN: "dc=acme,dc=com", UsernameAttr: "uid"},
		IDAttr:     "uid",
	}
	if ps := cfg.Validate(); len(ps) > 0 {
		t.Fatal(ps)
	}
	impl, err := cfg.Open(context.Background(), "corp", connectors.Options{})
	if err != nil {
		t.Fatal(err)
	}
	c := impl.(*Connector)
	t.Cleanup(func() { _ = c.Close() })
	ctx := context.Background()

	boundAs := func(what string) {
		t.Helper()
		s := c.pool.get()
		if s == nil {
			t.Fatalf("after %s: no connection kept", what)
		}
		s.attach(ctx)
		res, err := s.l.WhoAmI(nil)
		if err != nil {
			t.Fatalf("after %s: Who am I: %v", what, err)
		}
		if res.AuthzID != "dn:"+service {
			t.Errorf("after %s: the kept connection is bound as %q, want dn:%s", what, res.AuthzID, service)
		}
		c.release(s, true)
	}
	id, ok, err := c.Login(ctx, connectors.Scopes{}, "dana", "dana-pw")
	if !ok || err != nil {
		t.Fatalf("dana: %v, %v", ok, err)
	}
	boundAs("a sign-in")
	if _, ok, err := c.Login(ctx, connectors.Scopes{}, "dana", "wrong"); ok || err != nil {
		t.Fatalf("wrong password: %v, %v", ok, err)
	}
	boundAs("a wrong password")
	if _, ok, err := c.Login(ctx, connectors.Scopes{}, "nobody", "pw"); ok || err != nil {
		t.Fatalf("unknown user: %v, %v", ok, err)
	}
	boundAs("an unknown user")
	if _, err := c.Refresh(ctx, connectors.Scopes{}, id); err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	boundAs("a refresh")
}
