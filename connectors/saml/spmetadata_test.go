package saml

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"encoding/xml"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/crewjam/saml"
	"github.com/crewjam/saml/samlidp"

	"github.com/fedbroker/fedbroker/connectors"
)

// TestSPMetadataWantAssertionsSigned: the SP metadata asks for signed
// assertions exactly when require_signed does.
func TestSPMetadataWantAssertionsSigned(t *testing.T) {
	for _, tt := range []struct {
		requireSigned string
		want          bool
	}{{"", true}, {SignedAssertion, true}, {SignedBoth, true}, {SignedResponse, false}} {
		t.Run("require_signed="+tt.requireSigned, func(t *testing.T) {
			f := newFixture(t, Config{RequireSigned: tt.requireSigned})
			_, body, err := f.conn.Metadata(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			var ed saml.EntityDescriptor
			if err := xml.Unmarshal(body, &ed); err != nil {
				t.Fatal(err)
			}
			got := ed.SPSSODescriptors[0].WantAssertionsSigned
			if got == nil || *got != tt.want {
				t.Errorf("WantAssertionsSigned = %v, want %v\n%s", got, tt.want, body)
			}
		})
	}
}

// writeECKeyPair writes a P-256 key (PKCS#8) and a self-signed certificate.
func writeECKeyPair(t *testing.T) (certFile, keyFile string, cert *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "metadata signer"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	if cert, err = x509.ParseCertificate(der); err != nil {
		t.Fatal(err)
	}
	p8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "md.crt"), filepath.Join(dir, "md.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, cert
}

// TestSignedSPMetadata: with metadata_signing_*, the SP metadata carries a
// signature that crewjam/saml's IdP, told to accept only metadata signed
// by that certificate, verifies; a sign-in then works. Metadata signed by
// another key, unsigned or altered, is refused.
func TestSignedSPMetadata(t *testing.T) {
	ecCert, ecKey, ec := writeECKeyPair(t)
	rsaCert, rsaKey := writeKeyPair(t, spKey())
	tests := []struct {
		name             string
		certFile, keyKey string
		cert             *x509.Certificate
	}{
		{"RSA", rsaCert, rsaKey, spKey().cert},
		{"ECDSA", ecCert, ecKey, ec},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ti := newTestIdP(t, func(o *samlidp.Options) { o.SPMetadataCertificates = []*x509.Certificate{tt.cert} })
			cfg := Config{IDPMetadataURL: ti.srv.URL + "/metadata", MetadataSigningCertificateFile: tt.certFile, MetadataSigningKeyFile: tt.keyKey}
			ctx := context.Background()
			impl, err := cfg.Open(ctx, testID, connectors.Options{HTTPClient: ti.client, CallbackURL: testACS, BaseURL: testBaseURL, Now: time.Now, ReplayCache: &memReplay{}})
			if err != nil {
				t.Fatalf("Open() error = %v", err)
			}
			conn := impl.(*Connector)
			ct, md, err := conn.Metadata(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if ct != metadataContentType || !bytes.HasPrefix(md, []byte("<?xml")) {
				t.Errorf("Metadata() = %q, %.40q", ct, md)
			}
			if _, err := saml.VerifyMetadataSignature(md, []*x509.Certificate{tt.cert}); err != nil {
				t.Fatalf("signed metadata does not verify: %v\n%s", err, md)
			}
			if _, err := saml.VerifyMetadataSignature(md, []*x509.Certificate{otherKey().cert}); err == nil {
				t.Error("signed metadata verifies with another certificate")
			}
			altered := bytes.Replace(md, []byte(testACS), []byte("https://evil.test/callback/acme"), 1)
			if status := ti.tryPut(t, "/services/evil", string(altered)); status != http.StatusBadRequest {
				t.Errorf("IdP took altered metadata: %d", status)
			}
			g := newFixture(t, Config{})
			_, unsigned, _ := g.conn.Metadata(ctx)
			if status := ti.tryPut(t, "/services/unsigned", string(unsigned)); status != http.StatusBadRequest {
				t.Errorf("IdP took unsigned metadata: %d", status)
			}

			ti.put(t, "/services/broker", string(md))
			lr, st, err := conn.LoginRequest(ctx, connectors.Scopes{}, testACS, "relay-1")
			if err != nil {
				t.Fatal(err)
			}
			acs := ti.login(t, lr)
			r := httptest.NewRequest(http.MethodPost, testACS, bytes.NewReader([]byte(acs.Encode())))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if _, err := conn.HandlePOST(ctx, connectors.Scopes{}, st, r); err != nil {
				t.Fatalf("HandlePOST() after signed metadata error = %v", err)
			}
		})
	}
}

func TestLoadSignerErrors(t *testing.T) {
	rsaCert, rsaKey := writeKeyPair(t, spKey())
	ecCert, ecKey, _ := writeECKeyPair(t)
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ name, cert, key string }{
		{"missing cert", filepath.Join(dir, "none.crt"), rsaKey},
		{"missing key", rsaCert, filepath.Join(dir, "none.key")},
		{"garbage cert", garbage, rsaKey},
		{"garbage key", rsaCert, garbage},
		{"rsa cert, ec key", rsaCert, ecKey},
		{"ec cert, rsa key", ecCert, rsaKey},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := loadSigner(tt.cert, tt.key); err == nil {
				t.Error("loadSigner() succeeded")
			}
		})
	}
}
