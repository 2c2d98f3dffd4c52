package azuread

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fedbroker/fedbroker/connectors"
	"github.com/fedbroker/fedbroker/connectors/testidp"
)

// certFiles writes a fresh RSA key and a self-signed certificate for it.
func certFiles(t *testing.T) (cert *x509.Certificate, certFile, keyFile string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "fedbroker"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), crypto.Signer(key))
	if err != nil {
		t.Fatal(err)
	}
	if cert, err = x509.ParseCertificate(der); err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, certFile, keyFile
}

// TestCertificateCredentials: sign-in and refresh authenticate with an
// Entra-style assertion (PS256, x5t#S256, aud the token endpoint); the IdP
// refuses another certificate's.
func TestCertificateCredentials(t *testing.T) {
	idp := newIdP(t)
	entraUser(idp, tenantA, map[string]any{"iss": nil})
	cert, certFile, keyFile := certFiles(t)
	idp.SetClientAuth(testidp.ClientAuth{Certificates: []*x509.Certificate{cert}})
	cfg := singleTenant(idp)
	cfg.ClientSecret = ""
	cfg.ClientAuth = ClientAuth{Method: AuthCertificate, CertificateFile: certFile, KeyFile: keyFile}
	c := open(t, cfg)
	id, err := login(t, c)
	if err != nil {
		t.Fatalf("login error = %v", err)
	}
	if _, err := c.Refresh(context.Background(), connectors.Scopes{}, id); err != nil {
		t.Fatalf("Refresh() error = %v", err)
	}
	as := idp.Assertions()
	if len(as) != 2 {
		t.Fatalf("assertions = %d, want 2", len(as))
	}
	sum := sha256.Sum256(cert.Raw)
	h := as[0].Header
	if h["alg"] != "PS256" || h["x5t#S256"] != base64.RawURLEncoding.EncodeToString(sum[:]) || h["x5t"] == nil {
		t.Errorf("header = %v, want PS256 with x5t#S256 and x5t", h)
	}
	if aud := as[0].Claims["aud"]; aud != idp.TokenURL() {
		t.Errorf("aud = %v, want %s", aud, idp.TokenURL())
	}

	other, _, _ := certFiles(t)
	idp.SetClientAuth(testidp.ClientAuth{Certificates: []*x509.Certificate{other}})
	_, err = login(t, c)
	wantCode(t, err, "upstream_error")
}

func TestValidateClientAuth(t *testing.T) {
	_, certFile, keyFile := certFiles(t)
	_, otherCert, _ := certFiles(t)
	cert := func(ca ClientAuth) Config {
		ca.Method = AuthCertificate
		return Config{ClientID: "c", Tenant: tenantA, ClientAuth: ca}
	}
	for _, tt := range []struct {
		name       string
		cfg        Config
		path, want string
	}{
		{"no secret", Config{ClientID: "c", Tenant: tenantA}, "client_secret", "or set client_auth.method to certificate"},
		{"both", func() Config {
			c := cert(ClientAuth{CertificateFile: certFile, KeyFile: keyFile})
			c.ClientSecret = "s"
			return c
		}(), "client_secret", "must be empty"},
		{"no certificate", cert(ClientAuth{KeyFile: keyFile}), "client_auth.certificate_file", "is required"},
		{"no key", cert(ClientAuth{CertificateFile: certFile}), "client_auth.key_file", "is required"},
		{"unreadable key", cert(ClientAuth{CertificateFile: certFile, KeyFile: "/nonexistent/key.pem"}), "client_auth.key_file", "cannot read"},
		{"mismatch", cert(ClientAuth{CertificateFile: otherCert, KeyFile: keyFile}), "client_auth.certificate_file", "not for the key"},
		{"ES256", cert(ClientAuth{CertificateFile: certFile, KeyFile: keyFile, Algorithm: "ES256"}), "client_auth.algorithm", "PS256 or RS256"},
		{"private_key_jwt", Config{ClientID: "c", Tenant: tenantA, ClientAuth: ClientAuth{Method: "private_key_jwt"}}, "client_auth.method", "client_secret or certificate"},
		{"key with secret", Config{ClientID: "c", ClientSecret: "s", Tenant: tenantA, ClientAuth: ClientAuth{KeyFile: keyFile}}, "client_auth.key_file", "only for client_auth.method certificate"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			errs := tt.cfg.Validate()
			for _, e := range errs {
				if e.Path == tt.path && strings.Contains(e.Message, tt.want) {
					return
				}
			}
			t.Errorf("Validate() = %v, want %s: ...%s...", errs, tt.path, tt.want)
		})
	}
	ok := cert(ClientAuth{CertificateFile: certFile, KeyFile: keyFile, Algorithm: "RS256"})
	if errs := ok.Validate(); len(errs) > 0 {
		t.Errorf("Validate() = %v, want none", errs)
	}
}
