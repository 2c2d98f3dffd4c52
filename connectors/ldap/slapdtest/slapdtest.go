// Package slapdtest starts a private OpenLDAP slapd for tests.
//
// Start writes a slapd.conf (mdb backend; the core, cosine, inetorgperson
// and nis schemas from /etc/ldap/schema) and the given LDIF into a
// temporary directory, loads the LDIF with slapadd, and runs slapd in the
// foreground on a free loopback port until the test ends. With TLS set it
// also generates a test CA and a server certificate for 127.0.0.1 and
// localhost, so the same port offers StartTLS and a second port LDAPS.
//
// slapd comes from Debian's slapd package (/usr/sbin/slapd). Without it
// the test is skipped, except when $CI is "true", where it fails.
package slapdtest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Suffix is the naming context of the directory Start creates; RootDN and
// RootPassword are its administrator.
const (
	Suffix       = "dc=acme,dc=com"
	RootDN       = "cn=admin,dc=acme,dc=com"
	RootPassword = "admin-secret"
)

// Options configure Start.
type Options struct {
	// LDIF is loaded with slapadd; it should start with the suffix entry
	// (dn: dc=acme,dc=com). Empty: a base entry only.
	LDIF string
	// TLS adds a certificate signed by a new test CA (Server.CA): StartTLS
	// on Addr and LDAPS on LDAPSAddr.
	TLS bool
}

// Server is a running slapd owned by one test.
type Server struct {
	// Addr is 127.0.0.1:port of plain LDAP (and StartTLS with TLS).
	Addr string
	// LDAPSAddr is 127.0.0.1:port of LDAPS, set with Options.TLS.
	LDAPSAddr string
	// CA signed the server's certificate (Options.TLS); CA.CertFile is the
	// root_ca to configure.
	CA *CA

	mu     sync.Mutex
	proc   *os.Process
	exited chan struct{}
	log    *logBuffer
}

// Binary returns the path of an OpenLDAP program (slapd, slapadd), from
// PATH or /usr/sbin. When it is not installed the test is skipped, except
// under CI=true, where it fails: CI must never pass by skipping.
func Binary(t testing.TB, name string) string {
	t.Helper()
	if bin, err := exec.LookPath(name); err == nil {
		return bin
	}
	if bin := filepath.Join("/usr/sbin", name); isExecutable(bin) {
		return bin
	}
	msg := "slapdtest: " + name + " not found in PATH or /usr/sbin; install slapd (apt-get install slapd ldap-utils) to run this test"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

const base = "dn: " + Suffix + "\nobjectClass: dcObject\nobjectClass: organization\ndc: acme\no: Acme\n"

// Start runs slapd with opts and stops it when t ends.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	slapd := Binary(t, "slapd")
	slapadd := Binary(t, "slapadd")
	if _, err := os.Stat("/etc/ldap/schema/core.schema"); err != nil {
		t.Fatalf("slapdtest: %v (the slapd package installs the schemas)", err)
	}
	dir := t.TempDir()
	s := &Server{log: &logBuffer{}}
	tlsConf := ""
	if opts.TLS {
		s.CA = NewCA(t)
		cert, key := s.CA.Issue(t, dir, "127.0.0.1", "localhost")
		tlsConf = fmt.Sprintf("TLSCACertificateFile %s\nTLSCertificateFile %s\nTLSCertificateKeyFile %s\n", s.CA.CertFile, cert, key)
	}
	conf := filepath.Join(dir, "slapd.conf")
	if err := os.MkdirAll(filepath.Join(dir, "db"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, []byte(slapdConf(dir, tlsConf)), 0o600); err != nil {
		t.Fatal(err)
	}
	ldif := opts.LDIF
	if ldif == "" {
		ldif = base
	}
	ldifFile := filepath.Join(dir, "data.ldif")
	if err := os.WriteFile(ldifFile, []byte(ldif), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(slapadd, "-f", conf, "-l", ldifFile).CombinedOutput(); err != nil {
		t.Fatalf("slapdtest: slapadd: %v\n%s", err, out)
	}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		ports, err := freePorts(2)
		if err != nil {
			t.Fatalf("slapdtest: free port: %v", err)
		}
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
		urls := "ldap://" + s.Addr + "/"
		if opts.TLS {
			s.LDAPSAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1]))
			urls += " ldaps://" + s.LDAPSAddr + "/"
		}
		if lastErr = s.start(slapd, conf, urls); lastErr == nil {
			t.Cleanup(s.Stop)
			return s
		}
	}
	t.Fatalf("slapdtest: start slapd: %v", lastErr)
	return nil
}

func slapdConf(dir, tlsConf string) string {
	var b strings.Builder
	for _, schema := range []string{"core", "cosine", "inetorgperson", "nis"} {
		fmt.Fprintf(&b, "include /etc/ldap/schema/%s.schema\n", schema)
	}
	fmt.Fprintf(&b, "pidfile %s\nargsfile %s\n", filepath.Join(dir, "slapd.pid"), filepath.Join(dir, "slapd.args"))
	b.WriteString("modulepath /usr/lib/ldap\nmoduleload back_mdb\nloglevel none\n")
	b.WriteString(tlsConf)
	fmt.Fprintf(&b, "database mdb\nmaxsize 16777216\nsuffix %q\nrootdn %q\nrootpw %s\ndirectory %s\n",
		Suffix, RootDN, RootPassword, filepath.Join(dir, "db"))
	b.WriteString("access to attrs=userPassword by anonymous auth by self read by * none\n")
	b.WriteString("access to * by users read by * none\n")
	return b.String()
}

func (s *Server) start(slapd, conf, urls string) error {
	cmd := exec.Command(slapd, "-d", "0", "-f", conf, "-h", urls)
	cmd.Stdout, cmd.Stderr = s.log, s.log
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-exited:
			return fmt.Errorf("slapd exited: %s", s.log.String())
		default:
		}
		c, err := net.DialTimeout("tcp", s.Addr, 200*time.Millisecond)
		if err == nil {
			_ = c.Close()
			break
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited
			return fmt.Errorf("slapd on %s did not accept connections: %v; log: %s", s.Addr, err, s.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.mu.Lock()
	s.proc, s.exited = cmd.Process, exited
	s.mu.Unlock()
	return nil
}

// Stop kills slapd; clients then see connection errors. It is idempotent.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return
	}
	_ = s.proc.Kill()
	<-s.exited
	s.proc, s.exited = nil, nil
}

func freePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// logBuffer collects slapd's output, for the error when it fails.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() < 1<<16 {
		l.b.Write(p)
	}
	return len(p), nil
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
