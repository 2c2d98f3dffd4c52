package ldap_test

import (
	"context"
	"errors"
	"testing"

	goldap "github.com/go-ldap/ldap/v3"

	"github.com/fedbroker/fedbroker/connectors"
	"github.com/fedbroker/fedbroker/connectors/ldap/slapdtest"
)

// asAdmin runs f on a connection bound as the directory's root.
func asAdmin(t *testing.T, addr string, f func(l *goldap.Conn) error) {
	t.Helper()
	l, err := goldap.DialURL("ldap://" + addr)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Bind(slapdtest.RootDN, slapdtest.RootPassword); err != nil {
		t.Fatal(err)
	}
	if err := f(l); err != nil {
		t.Fatal(err)
	}
}

func TestRefresh(t *testing.T) {
	d := directory(t)
	conn := open(t, searchConfig(d.Addr))
	alice, _ := login(t, conn, "alice", "alice-pw")
	bob, _ := login(t, conn, "bob", "bob-pw")
	if len(alice.ConnectorData) == 0 {
		t.Fatal("a search-then-bind sign-in carries no ConnectorData")
	}
	refresh := func(id connectors.Identity) (connectors.Identity, error) {
		return conn.Refresh(context.Background(), connectors.Scopes{}, connectors.Identity{Subject: id.Subject, ConnectorData: id.ConnectorData})
	}
	if got, err := refresh(alice); err != nil || !equal(got.Claims["groups"], []any{"admins", "eng"}) || got.Subject != "1001" {
		t.Fatalf("Refresh(alice) = %v, %v", got, err)
	}

	// Groups are read again; a deleted user can no longer refresh.
	asAdmin(t, d.Addr, func(l *goldap.Conn) error {
		m := goldap.NewModifyRequest("cn=eng,ou=groups,dc=acme,dc=com", nil)
		m.Delete("member", []string{"uid=alice,ou=people,dc=acme,dc=com"})
		if err := l.Modify(m); err != nil {
			return err
		}
		return l.Del(goldap.NewDelRequest("uid=bob,ou=people,dc=acme,dc=com", nil))
	})
	if got, err := refresh(alice); err != nil || !equal(got.Claims["groups"], []any{"admins"}) {
		t.Errorf("Refresh(alice) after leaving eng = %v, %v; want groups [admins]", got.Claims["groups"], err)
	}
	var ue *connectors.UserError
	if _, err := refresh(bob); !errors.Is(err, connectors.ErrRefused) || !errors.As(err, &ue) {
		t.Errorf("Refresh(deleted bob) = %v; want a UserError wrapping ErrRefused", err)
	}
	if _, err := conn.Refresh(context.Background(), connectors.Scopes{}, connectors.Identity{ConnectorData: []byte("{")}); !errors.Is(err, connectors.ErrRefused) {
		t.Errorf("Refresh(garbage) = %v; want ErrRefused", err)
	}

	// A directory that is down is not a refusal.
	d.Stop()
	if _, err := refresh(alice); !errors.Is(err, connectors.ErrUnavailable) {
		t.Errorf("Refresh with the directory down = %v; want ErrUnavailable", err)
	}
}

func TestDirectBindHasNoRefreshState(t *testing.T) {
	c := searchConfig(directory(t).Addr)
	c.BindDN, c.BindPassword, c.UserDNTemplate = "", "", "uid={username},ou=people,dc=acme,dc=com"
	if id, ok := login(t, open(t, c), "alice", "alice-pw"); !ok || id.ConnectorData != nil {
		t.Errorf("direct bind: ok %v, ConnectorData %q; want none (nothing to refresh with)", ok, id.ConnectorData)
	}
}
