package broker

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/fedbroker/fedbroker/connectors/testidp"
)

// TestUpstreamClientAuthWithoutSecret signs in through the broker and
// refreshes at an upstream that forbids client secrets: once with
// private_key_jwt (the upstream checks the assertion's signature, issuer,
// audience and one-time jti) and once as a public client with PKCE.
func TestUpstreamClientAuthWithoutSecret(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "upstream-key.pem")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name       string
		auth       testidp.ClientAuth
		clientAuth string
		assertions bool
	}{
		{"private_key_jwt", testidp.ClientAuth{Keys: &jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: "k1", Algorithm: "ES256", Use: "sig"}}}},
			fmt.Sprintf("client_auth: {method: private_key_jwt, key_file: %s, key_id: k1}\n", keyFile), true},
		{"public client", testidp.ClientAuth{Public: true}, "client_auth: {method: none}\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			idp := newCorpIdP(t)
			idp.SetClientAuth(tc.auth)
			up := upstream{id: "corp", typ: "oidc", name: "Corp SSO", config: fmt.Sprintf("issuer: %s\nclient_id: %s\ntimeout: 1s\n%s",
				idp.URL(), idp.ClientID(), tc.clientAuth)}
			h := newHarness(t, nil, nil, withUpstreams(t, []upstream{up}, nil))
			tr, _ := h.upstreamSignIn(h.newBrowser(), "corp")
			if tr.RefreshToken == "" {
				t.Fatal("no refresh token")
			}
			if rr := h.refresh(tr.RefreshToken, "app"); rr.status != http.StatusOK {
				t.Fatalf("refresh (asks the upstream again) = %d %s %s", rr.status, rr.Error, rr.Description)
			}
			if got := len(idp.Assertions()); tc.assertions && got != 2 {
				t.Errorf("upstream accepted %d client assertions, want 2 (code exchange and refresh)", got)
			}
		})
	}
}

// TestUpstreamAzureADCertificate signs in through the broker at an Entra
// ID (the test IdP behind the azuread connector's login URL) that knows
// the app registration only by its certificate: the connector proves
// itself with a client assertion carrying the certificate's thumbprint.
func TestUpstreamAzureADCertificate(t *testing.T) {
	const tenant = "11111111-1111-1111-1111-111111111111"
	rsaKey, cert := selfSigned(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	der, err := x509.MarshalPKCS8PrivateKey(rsaKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	idp := testidp.New(testidp.Options{Algorithm: "RS256"})
	t.Cleanup(idp.Close)
	idp.SetIssuer(idp.URL() + "/" + tenant + "/v2.0")
	idp.SetClientAuth(testidp.ClientAuth{Certificates: []*x509.Certificate{cert}})
	idp.SetUser(testidp.User{Subject: "pairwise-1", Claims: map[string]any{
		"tid": tenant, "oid": "aaaaaaaa-0000-0000-0000-000000000001",
		"preferred_username": "ada@contoso.com",
	}})
	entra := upstream{id: "entra", typ: "azuread", name: "Entra", config: fmt.Sprintf(`
client_id: %s
client_auth: {method: certificate, certificate_file: %s, key_file: %s}
tenant: %s
login_url: %s
graph_url: %s
timeout: 5s
`, idp.ClientID(), certFile, keyFile, tenant, idp.URL(), idp.URL())}
	h := newHarness(t, nil, nil, withUpstreams(t, []upstream{entra}, nil))
	tr, _ := h.upstreamSignIn(h.newBrowser(), "entra")
	if rr := h.refresh(tr.RefreshToken, "app"); rr.status != http.StatusOK {
		t.Fatalf("refresh = %d %s %s", rr.status, rr.Error, rr.Description)
	}
	as := idp.Assertions()
	if len(as) != 2 || as[0].Header["x5t#S256"] == nil {
		t.Errorf("upstream accepted %d assertions (%v), want 2 with x5t#S256", len(as), as)
	}
}

// selfSigned returns an RSA key and a self-signed certificate for it, as
// an app registration's certificate credential.
func selfSigned(t *testing.T) (*rsa.PrivateKey, *x509.Certificate) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "fedbroker"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return key, cert
}
