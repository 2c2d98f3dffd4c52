package oidc

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha1" //nolint:gosec // x5t is a SHA-1 thumbprint by definition (RFC 7515 §4.1.7)
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/oauth2"

	"github.com/fedbroker/fedbroker/jwa"
	"github.com/fedbroker/fedbroker/problem"
)

// Values of ClientAuth.Method: how the connector authenticates to the
// upstream token endpoint.
const (
	// AuthClientSecret sends client_secret (HTTP Basic, or in the form
	// when the upstream refuses Basic). The default.
	AuthClientSecret = "client_secret"
	// AuthPrivateKeyJWT sends a client_assertion JWT signed with a private
	// key (RFC 7523, OpenID Connect Core §9).
	AuthPrivateKeyJWT = "private_key_jwt"
	// AuthNone is a public client: client_id only, PKCE (always sent)
	// binds the code to this sign-in.
	AuthNone = "none"
)

// Values of ClientAuth.Audience.
const (
	AudienceTokenEndpoint = "token_endpoint" // the default (OpenID Connect Core §9, Entra, Okta)
	AudienceIssuer        = "issuer"         // the upstream's issuer (RFC 7523bis; Keycloak accepts both)
)

// AssertionType is the client_assertion_type of RFC 7523 §2.2.
const AssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// AssertionLifetime is how long a client assertion is valid: each token
// request gets a fresh one.
const AssertionLifetime = 2 * time.Minute

// maxTokenRequestBody bounds the token request form the assertion
// transport rewrites.
const maxTokenRequestBody = 1 << 20

// ClientAuth is the `client_auth:` block of the connector's config: how
// the connector authenticates at the upstream token endpoint, on code
// exchange and on refresh.
type ClientAuth struct {
	// Method is client_secret (default), private_key_jwt or none.
	Method string `yaml:"method"`
	// KeyFile is a PEM private key (PKCS#8, PKCS#1 RSA or SEC 1 EC) that
	// signs client assertions; private_key_jwt only.
	KeyFile string `yaml:"key_file"`
	// Key is the same PEM given inline instead, typically from an
	// environment variable (key: ${OIDC_CLIENT_KEY}); one of the two.
	Key string `yaml:"key"`
	// KeyID is the assertion's kid header, as the key is registered
	// upstream; unset: no kid.
	KeyID string `yaml:"key_id"`
	// Algorithm signs the assertion: RS256 (default for RSA keys), RS384,
	// RS512, PS256, PS384, PS512, ES256 / ES384 / ES512 (the default for a
	// P-256 / P-384 / P-521 key) or EdDSA (the default for Ed25519).
	Algorithm string `yaml:"algorithm"`
	// CertificateFile is the PEM certificate of KeyFile's key; when set, the
	// assertion carries its thumbprints in x5t#S256 and x5t (Entra ID
	// certificate credentials).
	CertificateFile string `yaml:"certificate_file"`
	// Audience is the assertion's aud: token_endpoint (default) or issuer.
	Audience string `yaml:"audience"`
}

// method is m's method with the default applied.
func (m ClientAuth) method() string {
	if m.Method == "" {
		return AuthClientSecret
	}
	return m.Method
}

// validateClientAuth checks client_secret and client_auth together.
func (c *Config) validateClientAuth() []problem.Problem {
	var errs []problem.Problem
	add := func(path, format string, args ...any) {
		errs = append(errs, problem.Problem{Path: path, Message: fmt.Sprintf(format, args...)})
	}
	ca := c.ClientAuth
	m := ca.method()
	switch m {
	case AuthClientSecret:
		if c.ClientSecret == "" {
			add("client_secret", "is required (or set client_auth.method to private_key_jwt or none)")
		}
	case AuthPrivateKeyJWT, AuthNone:
		if c.ClientSecret != "" {
			add("client_secret", "must be empty: client_auth.method %s authenticates without a secret", m)
		}
	default:
		add("client_auth.method", "must be client_secret, private_key_jwt or none, not %q", ca.Method)
		return errs
	}
	if m != AuthPrivateKeyJWT {
		for path, v := range map[string]string{"key_file": ca.KeyFile, "key": ca.Key, "key_id": ca.KeyID, "algorithm": ca.Algorithm, "certificate_file": ca.CertificateFile, "audience": ca.Audience} {
			if v != "" {
				add("client_auth."+path, "is only for client_auth.method private_key_jwt")
			}
		}
		return errs
	}
	switch ca.Audience {
	case "", AudienceTokenEndpoint, AudienceIssuer:
	default:
		add("client_auth.audience", "must be token_endpoint or issuer, not %q", ca.Audience)
	}
	switch {
	case ca.KeyFile == "" && ca.Key == "":
		add("client_auth.key_file", "is required with client_auth.method private_key_jwt (a PEM private key; or give the PEM itself in client_auth.key)")
		return errs
	case ca.KeyFile != "" && ca.Key != "":
		add("client_auth.key", "must be empty when client_auth.key_file is set: give the key one way, not both")
		return errs
	}
	if _, err := loadAssertionKey(ca); err != nil {
		var pe *keyProblem
		if errors.As(err, &pe) {
			add("client_auth."+pe.path, "%s", pe.msg)
		} else {
			add("client_auth."+ca.keyPath(), "%v", err)
		}
	}
	return errs
}

// keyProblem is a client_auth problem with the field it belongs to.
type keyProblem struct{ path, msg string }

func (e *keyProblem) Error() string { return "client_auth." + e.path + ": " + e.msg }

func keyErr(path, format string, args ...any) error {
	return &keyProblem{path: path, msg: fmt.Sprintf(format, args...)}
}

// assertionKey is a loaded private_key_jwt key.
type assertionKey struct {
	key     crypto.Signer
	alg     jose.SignatureAlgorithm
	headers map[jose.HeaderKey]any
}

// keyPath is the field ca's key comes from: key_file, or key.
func (ca ClientAuth) keyPath() string {
	if ca.KeyFile == "" && ca.Key != "" {
		return "key"
	}
	return "key_file"
}

// loadAssertionKey reads ca's key (and certificate) and checks the
// algorithm fits the key.
func loadAssertionKey(ca ClientAuth) (assertionKey, error) {
	var ak assertionKey
	path := ca.keyPath()
	b := []byte(ca.Key)
	if path == "key_file" {
		var err error
		if b, err = os.ReadFile(ca.KeyFile); err != nil {
			return ak, keyErr(path, "cannot read the key: %v", err)
		}
	}
	key, err := jwa.ParsePrivateKeyPEM(b)
	if err != nil {
		return ak, keyErr(path, "%v", err)
	}
	alg, err := keyAlgorithm(key, ca.Algorithm, path)
	if err != nil {
		return ak, err
	}
	ak = assertionKey{key: key, alg: alg, headers: map[jose.HeaderKey]any{}}
	if ca.KeyID != "" {
		ak.headers["kid"] = ca.KeyID
	}
	if ca.CertificateFile != "" {
		cert, err := readCertificate(ca.CertificateFile)
		if err != nil {
			return ak, keyErr("certificate_file", "%v", err)
		}
		if !publicKeyEqual(cert.PublicKey, key.Public()) {
			return ak, keyErr("certificate_file", "the certificate is not for the key in %s", path)
		}
		s256 := sha256.Sum256(cert.Raw)
		s1 := sha1.Sum(cert.Raw) //nolint:gosec // see the import
		ak.headers["x5t#S256"] = base64.RawURLEncoding.EncodeToString(s256[:])
		ak.headers["x5t"] = base64.RawURLEncoding.EncodeToString(s1[:])
	}
	return ak, nil
}

// keyAlgorithm returns alg (or the key's default) after checking it fits
// the key. Its errors are *keyProblem: a problem of keyPath (key_file or
// key) when the key itself is unfit, else an algorithm one.
func keyAlgorithm(key crypto.Signer, alg, keyPath string) (jose.SignatureAlgorithm, error) {
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if k.N.BitLen() < 2048 {
			return "", keyErr(keyPath, "the RSA key has %d bits; at least 2048 are required", k.N.BitLen())
		}
		switch alg {
		case "":
			return jose.RS256, nil
		case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
			return jose.SignatureAlgorithm(alg), nil
		}
		return "", keyErr("algorithm", "must be RS256, RS384, RS512, PS256, PS384 or PS512 for an RSA key, not %q", alg)
	case *ecdsa.PrivateKey:
		want := map[elliptic.Curve]jose.SignatureAlgorithm{elliptic.P256(): jose.ES256, elliptic.P384(): jose.ES384, elliptic.P521(): jose.ES512}[k.Curve]
		if want == "" {
			return "", keyErr(keyPath, "the EC key's curve is not P-256, P-384 or P-521")
		}
		if alg == "" || alg == string(want) {
			return want, nil
		}
		return "", keyErr("algorithm", "must be %s for this EC key, not %q", want, alg)
	case ed25519.PrivateKey:
		if alg == "" || alg == string(jose.EdDSA) {
			return jose.EdDSA, nil
		}
		return "", keyErr("algorithm", "must be EdDSA for an Ed25519 key, not %q", alg)
	}
	return "", keyErr(keyPath, "unsupported key type %T", key)
}

func readCertificate(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read the certificate: %v", err)
	}
	var blk *pem.Block
	for {
		blk, b = pem.Decode(b)
		if blk == nil {
			return nil, fmt.Errorf("no PEM CERTIFICATE found")
		}
		if blk.Type == "CERTIFICATE" {
			break
		}
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("cannot parse the certificate: %v", err)
	}
	return cert, nil
}

func publicKeyEqual(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

// setupClientAuth configures c.oauth and c.tokenClient for the
// client_auth method; c.oauth.Endpoint is the upstream's (discovery).
func (c *Connector) setupClientAuth() error {
	ca := c.cfg.ClientAuth
	c.tokenClient = c.client
	switch ca.method() {
	case AuthClientSecret:
		return nil
	case AuthNone:
		c.oauth.Endpoint.AuthStyle = oauth2.AuthStyleInParams
		return nil
	}
	ak, err := loadAssertionKey(ca)
	if err != nil {
		return fmt.Errorf("oidc: %w", err)
	}
	opts := (&jose.SignerOptions{}).WithType("JWT")
	for k, v := range ak.headers {
		opts = opts.WithHeader(k, v)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: ak.alg, Key: ak.key}, opts)
	if err != nil {
		return fmt.Errorf("oidc: client assertion signer: %w", err)
	}
	tokenURL, err := url.Parse(c.oauth.Endpoint.TokenURL)
	if err != nil || tokenURL.Host == "" {
		return fmt.Errorf("oidc: discovery has no usable token_endpoint %q", c.oauth.Endpoint.TokenURL)
	}
	aud := c.oauth.Endpoint.TokenURL
	if ca.Audience == AudienceIssuer {
		aud = c.cfg.Issuer
	}
	c.oauth.Endpoint.AuthStyle = oauth2.AuthStyleInParams
	base := c.client.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	cl := *c.client
	cl.Transport = &assertionTransport{base: base, tokenURL: tokenURL, sign: func() (string, error) {
		now := c.now()
		return jwt.Signed(signer).Claims(jwt.Claims{
			Issuer:   c.cfg.ClientID,
			Subject:  c.cfg.ClientID,
			Audience: jwt.Audience{aud},
			ID:       randomString(),
			IssuedAt: jwt.NewNumericDate(now),
			// nbf as Entra's documentation lists it.
			NotBefore: jwt.NewNumericDate(now),
			Expiry:    jwt.NewNumericDate(now.Add(AssertionLifetime)),
		}).Serialize()
	}}
	c.tokenClient = &cl
	return nil
}

// tokenContext is ctx with the client for token endpoint requests.
func (c *Connector) tokenContext(ctx context.Context) context.Context {
	return oidc.ClientContext(ctx, c.tokenClient)
}

// assertionTransport adds a fresh client assertion to every POST to the
// token endpoint (code exchange and refresh alike: golang.org/x/oauth2
// has no hook for refresh requests' parameters).
type assertionTransport struct {
	base     http.RoundTripper
	tokenURL *url.URL
	sign     func() (string, error)
}

func (t *assertionTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method != http.MethodPost || r.URL.Scheme != t.tokenURL.Scheme || r.URL.Host != t.tokenURL.Host || r.URL.Path != t.tokenURL.Path {
		return t.base.RoundTrip(r)
	}
	var body []byte
	var err error
	if r.Body != nil {
		body, err = io.ReadAll(io.LimitReader(r.Body, maxTokenRequestBody))
		r.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("oidc: read token request: %w", err)
		}
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, fmt.Errorf("oidc: parse token request: %w", err)
	}
	assertion, err := t.sign()
	if err != nil {
		return nil, fmt.Errorf("oidc: sign client assertion: %w", err)
	}
	form.Del("client_secret")
	form.Set("client_assertion_type", AssertionType)
	form.Set("client_assertion", assertion)
	enc := []byte(form.Encode())
	r2 := r.Clone(r.Context())
	r2.Header.Del("Authorization")
	r2.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r2.Body = io.NopCloser(bytes.NewReader(enc))
	r2.ContentLength = int64(len(enc))
	r2.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(enc)), nil }
	return t.base.RoundTrip(r2)
}
