package ldap_test

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fedbroker/fedbroker/connectors"
	"github.com/fedbroker/fedbroker/connectors/ldap"
	"github.com/fedbroker/fedbroker/connectors/ldap/slapdtest"
)

const (
	bindDN = "cn=fedbroker,ou=services,dc=acme,dc=com"
	bindPW = "service-secret"
)

// directoryLDIF is Acme's test directory: alice (admins, eng), bob (eng),
// carol (no group), a service account, and groups as groupOfNames.
// seeAlso stands in for memberOf, which needs slapd's memberof overlay.
func directoryLDIF() string {
	return `dn: dc=acme,dc=com
objectClass: dcObject
objectClass: organization
dc: acme
o: Acme

dn: ou=people,dc=acme,dc=com
objectClass: organizationalUnit
ou: people

dn: ou=groups,dc=acme,dc=com
objectClass: organizationalUnit
ou: groups

dn: ou=services,dc=acme,dc=com
objectClass: organizationalUnit
ou: services

dn: cn=fedbroker,ou=services,dc=acme,dc=com
objectClass: inetOrgPerson
cn: fedbroker
sn: service
userPassword: ` + slapdtest.SSHA(bindPW) + `

dn: uid=alice,ou=people,dc=acme,dc=com
objectClass: inetOrgPerson
uid: alice
cn: Alice Liddell
sn: Liddell
mail: alice@acme.com
employeeNumber: 1001
departmentNumber: eng
departmentNumber: research
seeAlso: cn=admins,ou=groups,dc=acme,dc=com
userPassword: ` + slapdtest.SSHA("alice-pw") + `

dn: uid=bob,ou=people,dc=acme,dc=com
objectClass: inetOrgPerson
uid: bob
cn: Bob Builder
sn: Builder
mail: bob@acme.com
employeeNumber: 1002
userPassword: ` + slapdtest.SSHA("bob-pw") + `

dn: uid=carol\2C jr,ou=people,dc=acme,dc=com
objectClass: inetOrgPerson
uid: carol, jr
cn: Carol
sn: Junior
employeeNumber: 1003
userPassword: ` + slapdtest.SSHA("carol-pw") + `

dn: cn=admins,ou=groups,dc=acme,dc=com
objectClass: groupOfNames
cn: admins
member: uid=alice,ou=people,dc=acme,dc=com

dn: cn=eng,ou=groups,dc=acme,dc=com
objectClass: groupOfNames
cn: eng
member: uid=alice,ou=people,dc=acme,dc=com
member: uid=bob,ou=people,dc=acme,dc=com
`
}

// directory starts one TLS-capable slapd for the package's tests; it is
// stopped when the test that started it ends, so each top-level test
// that needs it calls directory itself.
func directory(t testing.TB) *slapdtest.Server {
	t.Helper()
	return slapdtest.Start(t, slapdtest.Options{LDIF: directoryLDIF(), TLS: true})
}

func searchConfig(host string) *ldap.Config {
	return &ldap.Config{
		Host:          host,
		TLS:           ldap.TLSNone,
		BindDN:        bindDN,
		BindPassword:  bindPW,
		UserSearch:    ldap.UserSearch{BaseDN: "ou=people,dc=acme,dc=com", Filter: "(objectClass=inetOrgPerson)", UsernameAttr: "uid"},
		IDAttr:        "employeeNumber",
		EmailAttr:     "mail",
		NameAttr:      "cn",
		ExtraAttrs:    []string{"departmentNumber"},
		MemberOfAttr:  "seeAlso",
		GroupSearch:   &ldap.GroupSearch{BaseDN: "ou=groups,dc=acme,dc=com", Filter: "(objectClass=groupOfNames)", UserMatcher: "member=dn", NameAttr: "cn"},
		Timeout:       2 * time.Second,
		EmailVerified: nil,
	}
}

func open(t testing.TB, c *ldap.Config) *ldap.Connector {
	t.Helper()
	if ps := c.Validate(); len(ps) > 0 {
		t.Fatalf("Validate: %v", ps)
	}
	impl, err := c.Open(context.Background(), "corp", connectors.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = impl.(*ldap.Connector).Close() })
	if kind, err := connectors.SignInKind(impl); err != nil || kind != connectors.KindPassword {
		t.Fatalf("SignInKind = %q, %v", kind, err)
	}
	return impl.(*ldap.Connector)
}

func login(t *testing.T, c *ldap.Connector, user, pass string) (connectors.Identity, bool) {
	t.Helper()
	id, ok, err := c.Login(context.Background(), connectors.Scopes{}, user, pass)
	if err != nil {
		t.Fatalf("Login(%q): %v", user, err)
	}
	return id, ok
}

func TestLoginSearchThenBind(t *testing.T) {
	conn := open(t, searchConfig(directory(t).Addr))
	id, ok := login(t, conn, "alice", "alice-pw")
	if !ok {
		t.Fatal("alice with her password was refused")
	}
	if id.Subject != "1001" {
		t.Errorf("subject = %q, want 1001 (employeeNumber)", id.Subject)
	}
	want := map[string]any{
		"sub": "1001", "dn": "uid=alice,ou=people,dc=acme,dc=com", "username": "alice", "preferred_username": "alice",
		"email": "alice@acme.com", "email_verified": true, "name": "Alice Liddell",
		"groups": []any{"admins", "eng"}, "departmentNumber": []any{"eng", "research"},
	}
	for k, v := range want {
		if got := id.Claims[k]; !equal(got, v) {
			t.Errorf("claim %s = %#v, want %#v", k, got, v)
		}
	}
	for _, tt := range []struct{ name, user, pass string }{
		{"wrong password", "alice", "alice-PW"},
		{"other user's password", "bob", "alice-pw"},
		{"unknown user", "mallory", "alice-pw"},
		{"empty password", "alice", ""},
		{"injection", "*)(uid=*", "alice-pw"},
		{"wildcard", "*", "alice-pw"},
		{"injection with alice", "alice)(uid=*", "alice-pw"},
		{"NUL", "alice\x00", "alice-pw"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, ok := login(t, conn, tt.user, tt.pass); ok {
				t.Errorf("Login(%q, %q) succeeded", tt.user, tt.pass)
			}
		})
	}
	if id, ok := login(t, conn, "bob", "bob-pw"); !ok || !equal(id.Claims["groups"], []any{"eng"}) {
		t.Errorf("bob: ok %v, groups %v; want eng", ok, id.Claims["groups"])
	}
	if id, ok := login(t, conn, "carol, jr", "carol-pw"); !ok || !equal(id.Claims["groups"], []any{}) {
		t.Errorf("carol: ok %v, groups %v; want none", ok, id.Claims["groups"])
	}
}

func TestUserFilterEscapes(t *testing.T) {
	conn := open(t, searchConfig("127.0.0.1:389"))
	got := conn.UserFilter("*)(uid=*")
	want := `(&(objectClass=inetOrgPerson)(uid=\2a\29\28uid=\2a))`
	if got != want {
		t.Errorf("UserFilter = %s, want %s", got, want)
	}
}

func TestNestedGroupFilter(t *testing.T) {
	c := searchConfig("127.0.0.1:389")
	c.GroupSearch = &ldap.GroupSearch{BaseDN: "dc=corp,dc=example", Filter: "(objectClass=group)", Nested: true}
	got := open(t, c).GroupFilter("CN=Pat (Ops),OU=Staff,DC=corp,DC=example")
	want := `(&(objectClass=group)(member:1.2.840.113556.1.4.1941:=CN=Pat \28Ops\29,OU=Staff,DC=corp,DC=example))`
	if got != want {
		t.Errorf("GroupFilter = %s, want %s", got, want)
	}
}

func TestLoginDirectBind(t *testing.T) {
	c := &ldap.Config{
		Host:           directory(t).Addr,
		TLS:            ldap.TLSNone,
		UserDNTemplate: "uid={username},ou=people,dc=acme,dc=com",
		IDAttr:         "entryUUID",
		EmailAttr:      "mail",
		GroupSearch:    &ldap.GroupSearch{BaseDN: "ou=groups,dc=acme,dc=com"},
	}
	conn := open(t, c)
	id, ok := login(t, conn, "alice", "alice-pw")
	if !ok || len(id.Subject) != 36 || !equal(id.Claims["groups"], []any{"admins", "eng"}) {
		t.Errorf("alice: ok %v, subject %q (want an entryUUID), groups %v", ok, id.Subject, id.Claims["groups"])
	}
	if _, ok := login(t, conn, "carol, jr", "carol-pw"); !ok {
		t.Error("carol, jr (a comma in the RDN, escaped) was refused")
	}
	for _, u := range []string{"mallory", "alice,ou=people", "*"} {
		if _, ok := login(t, conn, u, "alice-pw"); ok {
			t.Errorf("Login(%q) succeeded", u)
		}
	}
	if _, ok := login(t, conn, "alice", "bob-pw"); ok {
		t.Error("wrong password accepted")
	}
}

func TestTLS(t *testing.T) {
	d := directory(t)
	for _, tt := range []struct{ mode, addr string }{{ldap.TLSStartTLS, d.Addr}, {ldap.TLSLDAPS, d.LDAPSAddr}} {
		t.Run(tt.mode, func(t *testing.T) {
			c := searchConfig(tt.addr)
			c.TLS, c.RootCA = tt.mode, d.CA.CertFile
			if _, ok := login(t, open(t, c), "alice", "alice-pw"); !ok {
				t.Error("alice refused over " + tt.mode)
			}
			c.RootCA = slapdtest.NewCA(t).CertFile
			start := time.Now()
			_, ok, err := open(t, c).Login(context.Background(), connectors.Scopes{}, "alice", "alice-pw")
			if ok || !errors.Is(err, connectors.ErrUnavailable) || !strings.Contains(err.Error(), "certificate") {
				t.Errorf("with the wrong CA: ok %v, err %v; want a certificate error wrapping ErrUnavailable", ok, err)
			}
			if time.Since(start) > time.Second {
				t.Errorf("refusal took %v", time.Since(start))
			}
		})
	}
}

func TestServiceAccountRefused(t *testing.T) {
	c := searchConfig(directory(t).Addr)
	c.BindPassword = "not-it"
	_, ok, err := open(t, c).Login(context.Background(), connectors.Scopes{}, "alice", "alice-pw")
	var ue *connectors.UserError
	if ok || !errors.As(err, &ue) || !errors.Is(err, connectors.ErrUpstream) {
		t.Errorf("ok %v, err %v; want a UserError wrapping ErrUpstream", ok, err)
	}
}

func TestDirectoryDown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	c := searchConfig(addr)
	start := time.Now()
	_, ok, err := open(t, c).Login(context.Background(), connectors.Scopes{}, "alice", "alice-pw")
	var ue *connectors.UserError
	if ok || !errors.As(err, &ue) || !errors.Is(err, connectors.ErrUnavailable) || ue.Code != ldap.CodeUnavailable {
		t.Errorf("ok %v, err %v; want a UserError wrapping ErrUnavailable", ok, err)
	}
	if d := time.Since(start); d > c.Timeout {
		t.Errorf("took %v, more than the timeout %v", d, c.Timeout)
	}
}

// TestDirectorySlow points the connector at a listener that accepts and
// reads but never answers, in each TLS mode.
func TestDirectorySlow(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				buf := make([]byte, 4096)
				for {
					if _, err := c.Read(buf); err != nil {
						_ = c.Close()
						return
					}
				}
			}()
		}
	}()
	for _, mode := range []string{ldap.TLSNone, ldap.TLSStartTLS, ldap.TLSLDAPS} {
		t.Run(mode, func(t *testing.T) {
			c := searchConfig(l.Addr().String())
			c.TLS, c.Timeout = mode, 300*time.Millisecond
			start := time.Now()
			_, ok, err := open(t, c).Login(context.Background(), connectors.Scopes{}, "alice", "alice-pw")
			d := time.Since(start)
			if ok || !errors.Is(err, connectors.ErrUnavailable) {
				t.Errorf("ok %v, err %v; want ErrUnavailable", ok, err)
			}
			if d < c.Timeout || d > c.Timeout+2*time.Second {
				t.Errorf("took %v; want about the timeout %v", d, c.Timeout)
			}
		})
	}
	t.Run("context", func(t *testing.T) {
		c := searchConfig(l.Addr().String())
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, _, err := open(t, c).Login(ctx, connectors.Scopes{}, "alice", "alice-pw")
		if !errors.Is(err, connectors.ErrUnavailable) || time.Since(start) > time.Second {
			t.Errorf("err %v after %v; want ErrUnavailable soon after the context's deadline", err, time.Since(start))
		}
	})
}

func equal(a, b any) bool {
	as, aok := a.([]any)
	bs, bok := b.([]any)
	if aok && bok {
		return slices.Equal(as, bs)
	}
	return a == b
}
