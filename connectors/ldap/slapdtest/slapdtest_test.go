package slapdtest

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"testing"

	goldap "github.com/go-ldap/ldap/v3"
)

func TestStartTLSAndStop(t *testing.T) {
	s := Start(t, Options{TLS: true})
	pem, err := os.ReadFile(s.CA.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("CA file holds no certificate")
	}
	tc := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}

	l, err := goldap.DialURL("ldap://" + s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.StartTLS(tc); err != nil {
		t.Fatalf("StartTLS: %v", err)
	}
	if err := l.Bind(RootDN, RootPassword); err != nil {
		t.Fatalf("bind as root: %v", err)
	}
	res, err := l.Search(goldap.NewSearchRequest(Suffix, goldap.ScopeBaseObject, goldap.NeverDerefAliases, 0, 0, false, "(objectClass=*)", []string{"o"}, nil))
	if err != nil || len(res.Entries) != 1 || res.Entries[0].GetAttributeValue("o") != "Acme" {
		t.Fatalf("base entry: %v, %v", res, err)
	}
	l.Close()

	ls, err := goldap.DialURL("ldaps://"+s.LDAPSAddr, goldap.DialWithTLSConfig(tc))
	if err != nil {
		t.Fatalf("LDAPS: %v", err)
	}
	if err := ls.Bind(RootDN, RootPassword); err != nil {
		t.Fatalf("bind over LDAPS: %v", err)
	}
	ls.Close()

	s.Stop()
	s.Stop() // idempotent
	if c, err := net.Dial("tcp", s.Addr); err == nil {
		c.Close()
		t.Error("slapd still accepts connections after Stop")
	}
}

func TestSSHA(t *testing.T) {
	a, b := SSHA("pw"), SSHA("pw")
	if a == b || len(a) != len("{SSHA}")+40 {
		t.Errorf("SSHA = %q, %q; want salted, 28 bytes base64", a, b)
	}
}
