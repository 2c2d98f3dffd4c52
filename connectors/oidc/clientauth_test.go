package oidc

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/fedbroker/fedbroker/connectors"
	"github.com/fedbroker/fedbroker/connectors/testidp"
)

func rsaKey(t *testing.T, bits int) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func ecKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func edKey(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// writePEM writes key as PKCS#8 PEM to a temporary file.
func writePEM(t *testing.T, key crypto.Signer) string {
	t.Helper()
	return writeFile(t, "key.pem", []byte(pemOf(t, key)))
}

// pemOf is key as a PKCS#8 PEM block.
func pemOf(t *testing.T, key crypto.Signer) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

func writeFile(t *testing.T, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// selfSigned returns a self-signed certificate for key and its PEM file.
func selfSigned(t *testing.T, key crypto.Signer) (*x509.Certificate, string) {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "broker"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, writeFile(t, "cert.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

func jwksOf(kid string, keys ...crypto.Signer) *jose.JSONWebKeySet {
	set := &jose.JSONWebKeySet{}
	for _, k := range keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.Public(), KeyID: kid})
	}
	return set
}

// keyConfig is baseConfig with private_key_jwt.
func keyConfig(idp *testidp.IdP, ca ClientAuth) Config {
	cfg := baseConfig(idp)
	cfg.ClientSecret = ""
	ca.Method = AuthPrivateKeyJWT
	cfg.ClientAuth = ca
	return cfg
}

// loginAndRefresh signs in through c and refreshes once.
func loginAndRefresh(t *testing.T, c *Connector) error {
	t.Helper()
	id, err := login(t, c)
	if err != nil {
		return err
	}
	_, err = c.Refresh(context.Background(), connectors.Scopes{OfflineAccess: true}, id)
	return err
}

// TestPrivateKeyJWT: the code exchange and the refresh each carry a fresh
// client assertion the IdP verifies like a real OP.
func TestPrivateKeyJWT(t *testing.T) {
	for _, tt := range []struct {
		alg string
		key crypto.Signer
	}{
		{"RS256", rsaKey(t, 2048)},
		{"PS256", rsaKey(t, 2048)},
		{"ES256", ecKey(t)},
		{"", ecKey(t)}, // ES256 by default for a P-256 key
		{"EdDSA", edKey(t)},
	} {
		t.Run(tt.alg, func(t *testing.T) {
			idp := newIdP(t, testidp.Options{})
			idp.SetClientAuth(testidp.ClientAuth{Keys: jwksOf("k1", tt.key)})
			c := open(t, keyConfig(idp, ClientAuth{KeyFile: writePEM(t, tt.key), KeyID: "k1", Algorithm: tt.alg}), nil)
			if err := loginAndRefresh(t, c); err != nil {
				t.Fatalf("sign-in and refresh: %v", err)
			}
			as := idp.Assertions()
			if len(as) != 2 {
				t.Fatalf("assertions = %d, want 2 (exchange and refresh)", len(as))
			}
			want := tt.alg
			if want == "" {
				want = "ES256"
			}
			for _, a := range as {
				if a.Header["alg"] != want || a.Header["kid"] != "k1" || a.Header["typ"] != "JWT" {
					t.Errorf("header = %v, want alg %s, kid k1, typ JWT", a.Header, want)
				}
				cl := a.Claims
				if cl["iss"] != idp.ClientID() || cl["sub"] != idp.ClientID() || cl["aud"] != idp.TokenURL() {
					t.Errorf("iss, sub, aud = %v %v %v", cl["iss"], cl["sub"], cl["aud"])
				}
				exp, _ := cl["exp"].(float64)
				iat, _ := cl["iat"].(float64)
				if iat == 0 || exp-iat <= 0 || exp-iat > 300 {
					t.Errorf("iat %v exp %v: want a lifetime of at most 5 minutes", iat, exp)
				}
			}
			if as[0].Claims["jti"] == as[1].Claims["jti"] {
				t.Errorf("jti reused: %v", as[0].Claims["jti"])
			}
		})
	}
}

// TestPrivateKeyJWTRefused: an assertion the upstream cannot verify, or
// made for another audience, fails the sign-in as an upstream error; a
// secret sent to a private_key_jwt client is refused as well.
func TestPrivateKeyJWTRefused(t *testing.T) {
	key := rsaKey(t, 2048)
	other := rsaKey(t, 2048)
	for _, tt := range []struct {
		name string
		reg  testidp.ClientAuth
		ca   ClientAuth
		cfg  func(*testidp.IdP, Config) Config
	}{
		{"unregistered key", testidp.ClientAuth{Keys: jwksOf("k1", other)}, ClientAuth{}, nil},
		{"wrong kid", testidp.ClientAuth{Keys: jwksOf("k2", key)}, ClientAuth{KeyID: "k1"}, nil},
		{"issuer audience refused", testidp.ClientAuth{Keys: jwksOf("", key)}, ClientAuth{Audience: AudienceIssuer}, nil},
		{"secret to a key client", testidp.ClientAuth{Keys: jwksOf("", key)}, ClientAuth{},
			func(idp *testidp.IdP, _ Config) Config { return baseConfig(idp) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			idp := newIdP(t, testidp.Options{})
			idp.SetClientAuth(tt.reg)
			tt.ca.KeyFile = writePEM(t, key)
			cfg := keyConfig(idp, tt.ca)
			if tt.cfg != nil {
				cfg = tt.cfg(idp, cfg)
			}
			_, err := login(t, open(t, cfg, nil))
			wantCode(t, err, CodeUpstreamError)
		})
	}
}

// TestPrivateKeyJWTIssuerAudience: audience issuer sends the issuer as aud.
func TestPrivateKeyJWTIssuerAudience(t *testing.T) {
	key := ecKey(t)
	idp := newIdP(t, testidp.Options{})
	idp.SetClientAuth(testidp.ClientAuth{Keys: jwksOf("", key), Audiences: []string{idp.Issuer()}})
	c := open(t, keyConfig(idp, ClientAuth{KeyFile: writePEM(t, key), Audience: AudienceIssuer}), nil)
	if err := loginAndRefresh(t, c); err != nil {
		t.Fatal(err)
	}
}

// TestPrivateKeyJWTInlineKey: client_auth.key holds the PEM itself
// (typically from an environment variable, ${OIDC_KEY}), for platforms
// that hand secrets over as variables rather than files.
func TestPrivateKeyJWTInlineKey(t *testing.T) {
	key := ecKey(t)
	idp := newIdP(t, testidp.Options{})
	idp.SetClientAuth(testidp.ClientAuth{Keys: jwksOf("k1", key)})
	c := open(t, keyConfig(idp, ClientAuth{Key: pemOf(t, key), KeyID: "k1"}), nil)
	if err := loginAndRefresh(t, c); err != nil {
		t.Fatalf("sign-in and refresh: %v", err)
	}
	if as := idp.Assertions(); len(as) != 2 || as[0].Header["alg"] != "ES256" {
		t.Fatalf("assertions = %+v, want 2 signed ES256", as)
	}
}

// TestPrivateKeyJWTCertificate: with certificate_file the assertion names
// the certificate by x5t#S256 (and x5t), as Entra ID wants.
func TestPrivateKeyJWTCertificate(t *testing.T) {
	key := rsaKey(t, 2048)
	cert, certFile := selfSigned(t, key)
	idp := newIdP(t, testidp.Options{})
	idp.SetClientAuth(testidp.ClientAuth{Certificates: []*x509.Certificate{cert}})
	c := open(t, keyConfig(idp, ClientAuth{KeyFile: writePEM(t, key), CertificateFile: certFile, Algorithm: "PS256"}), nil)
	if err := loginAndRefresh(t, c); err != nil {
		t.Fatal(err)
	}
	h := idp.Assertions()[0].Header
	if s, _ := h["x5t"].(string); len(s) != 27 {
		t.Errorf("x5t = %v, want a base64url SHA-1 thumbprint", h["x5t"])
	}
}

// TestPublicClient: method none sends no secret, and PKCE S256 binds the
// code; the IdP refuses a secret from a public client.
func TestPublicClient(t *testing.T) {
	idp := newIdP(t, testidp.Options{})
	idp.SetClientAuth(testidp.ClientAuth{Public: true})
	cfg := baseConfig(idp)
	cfg.ClientSecret = ""
	cfg.ClientAuth = ClientAuth{Method: AuthNone}
	if err := loginAndRefresh(t, open(t, cfg, nil)); err != nil {
		t.Fatal(err)
	}
	if q := idp.LastAuthorize(); q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" {
		t.Errorf("authorize without PKCE S256: %v", q)
	}
	_, err := login(t, open(t, baseConfig(idp), nil))
	wantCode(t, err, CodeUpstreamError)
}

// TestPublicClientVerifierChecked: a callback handled with another
// sign-in's state (so another code_verifier) is refused upstream.
func TestPublicClientVerifierChecked(t *testing.T) {
	idp := newIdP(t, testidp.Options{})
	idp.SetClientAuth(testidp.ClientAuth{Public: true})
	cfg := baseConfig(idp)
	cfg.ClientSecret = ""
	cfg.ClientAuth = ClientAuth{Method: AuthNone}
	c := open(t, cfg, nil)
	ctx := context.Background()
	u, _, err := c.LoginURL(ctx, connectors.Scopes{}, callbackURL, "s1")
	if err != nil {
		t.Fatal(err)
	}
	_, otherState, err := c.LoginURL(ctx, connectors.Scopes{}, callbackURL, "s2")
	if err != nil {
		t.Fatal(err)
	}
	r, err := testidp.CallbackRequest(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.HandleCallback(ctx, connectors.Scopes{}, otherState, r)
	wantCode(t, err, CodeInvalidResponse) // invalid_grant: PKCE verification failed
}

func TestValidateClientAuth(t *testing.T) {
	rsa2048 := writePEM(t, rsaKey(t, 2048))
	rsa1024 := writePEM(t, rsaKey(t, 1024))
	ec := ecKey(t)
	ecFile := writePEM(t, ec)
	_, otherCert := selfSigned(t, rsaKey(t, 2048))
	garbage := writeFile(t, "garbage.pem", []byte("not a key"))
	base := Config{Issuer: "https://idp.example", ClientID: "c"}
	for _, tt := range []struct {
		name       string
		secret     string
		ca         ClientAuth
		path, want string
	}{
		{"neither", "", ClientAuth{}, "client_secret", "is required"},
		{"both", "s", ClientAuth{Method: AuthPrivateKeyJWT, KeyFile: rsa2048}, "client_secret", "must be empty"},
		{"secret with none", "s", ClientAuth{Method: AuthNone}, "client_secret", "must be empty"},
		{"unknown method", "", ClientAuth{Method: "tls_client_auth"}, "client_auth.method", "must be client_secret, private_key_jwt or none"},
		{"no key", "", ClientAuth{Method: AuthPrivateKeyJWT}, "client_auth.key_file", "is required"},
		{"missing key", "", ClientAuth{Method: AuthPrivateKeyJWT, KeyFile: "/nonexistent/key.pem"}, "client_auth.key_file", "cannot read the key"},
		{"not a key", "", ClientAuth{Method: AuthPrivateKeyJWT, KeyFile: garbage}, "client_auth.key_file", "no PEM private key"},
		{"short RSA", "", ClientAuth{Method: AuthPrivateKeyJWT, KeyFile: rsa1024}, "client_auth.key_file", "at least 2048"},
		{"alg for another key", "", ClientAuth{Method: AuthPrivateKeyJWT, KeyFile: ecFile, Algorithm: "RS256"}, "client_auth.algorithm", "must be ES256"},
		{"HMAC", "", ClientAuth{Method: AuthPrivateKeyJWT, KeyFile: rsa2048, Algorithm: "HS256"}, "client_auth.algorithm", "must be RS256"},
		{"certificate of another key", "", ClientAuth{Method: AuthPrivateKeyJWT, KeyFile: ecFile, CertificateFile: otherCert}, "client_auth.certificate_file", "not for the key"},
		{"missing certificate", "", ClientAuth{Method: AuthPrivateKeyJWT, KeyFile: ecFile, CertificateFile: "/nonexistent.pem"}, "client_auth.certificate_file", "cannot read"},
		{"bad audience", "", ClientAuth{Method: AuthPrivateKeyJWT, KeyFile: ecFile, Audience: "everyone"}, "client_auth.audience", "token_endpoint or issuer"},
		{"key with secret method", "s", ClientAuth{KeyFile: ecFile}, "client_auth.key_file", "only for client_auth.method private_key_jwt"},
		{"inline key with secret method", "s", ClientAuth{Key: pemOf(t, ec)}, "client_auth.key", "only for client_auth.method private_key_jwt"},
		{"key and key_file", "", ClientAuth{Method: AuthPrivateKeyJWT, KeyFile: ecFile, Key: pemOf(t, ec)}, "client_auth.key", "not both"},
		{"inline not a key", "", ClientAuth{Method: AuthPrivateKeyJWT, Key: "not a key"}, "client_auth.key", "no PEM private key"},
		{"inline short RSA", "", ClientAuth{Method: AuthPrivateKeyJWT, Key: pemOf(t, rsaKey(t, 1024))}, "client_auth.key", "at least 2048"},
		{"inline key, certificate of another", "", ClientAuth{Method: AuthPrivateKeyJWT, Key: pemOf(t, ec), CertificateFile: otherCert}, "client_auth.certificate_file", "not for the key in key"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base
			cfg.ClientSecret = tt.secret
			cfg.ClientAuth = tt.ca
			errs := cfg.Validate()
			for _, e := range errs {
				if e.Path == tt.path && strings.Contains(e.Message, tt.want) {
					return
				}
			}
			t.Errorf("Validate() = %v, want %s: ...%s...", errs, tt.path, tt.want)
		})
	}
	for _, ca := range []ClientAuth{{Method: AuthNone}, {Method: AuthPrivateKeyJWT, KeyFile: rsa2048, Algorithm: "PS384", KeyID: "k"}, {Method: AuthPrivateKeyJWT, KeyFile: ecFile, Audience: AudienceIssuer},
		{Method: AuthPrivateKeyJWT, Key: pemOf(t, ec)}} {
		cfg := base
		cfg.ClientAuth = ca
		if errs := cfg.Validate(); len(errs) > 0 {
			t.Errorf("Validate(%+v) = %v, want none", ca, errs)
		}
	}
}
