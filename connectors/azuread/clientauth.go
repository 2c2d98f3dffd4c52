package azuread

import (
	"fmt"

	"github.com/fedbroker/fedbroker/connectors/oidc"
	"github.com/fedbroker/fedbroker/problem"
)

// Values of ClientAuth.Method.
const (
	AuthClientSecret = oidc.AuthClientSecret // the default
	// AuthCertificate authenticates with Entra certificate credentials: a
	// client assertion signed with the key of a certificate uploaded to
	// the app registration, naming it by x5t#S256 (and x5t).
	AuthCertificate = "certificate"
)

// ClientAuth is the `client_auth:` block: how the connector authenticates
// at Entra's token endpoint, on code exchange and on refresh.
type ClientAuth struct {
	// Method is client_secret (default) or certificate.
	Method string `yaml:"method"`
	// CertificateFile is the PEM certificate uploaded to the app
	// registration (Certificates & secrets).
	CertificateFile string `yaml:"certificate_file"`
	// KeyFile is its PEM private key (RSA, PKCS#8 or PKCS#1).
	KeyFile string `yaml:"key_file"`
	// Algorithm signs the assertion: PS256 (default, what Microsoft's
	// documentation asks for) or RS256.
	Algorithm string `yaml:"algorithm"`
}

// oidcClientAuth maps ca onto the generic connector's private_key_jwt:
// aud is the tenant's token endpoint, as Entra requires.
func (ca ClientAuth) oidcClientAuth() oidc.ClientAuth {
	if ca.Method != AuthCertificate {
		return oidc.ClientAuth{}
	}
	alg := ca.Algorithm
	if alg == "" {
		alg = "PS256"
	}
	return oidc.ClientAuth{Method: oidc.AuthPrivateKeyJWT, KeyFile: ca.KeyFile, CertificateFile: ca.CertificateFile,
		Algorithm: alg, Audience: oidc.AudienceTokenEndpoint}
}

// validateClientAuth checks client_secret and client_auth. base are the
// generic connector's problems: its client_secret and client_auth
// problems are replaced by these (they name its methods, not Entra's),
// except those about the files' contents.
func (c *Config) validateClientAuth(base []problem.Problem) []problem.Problem {
	var own []problem.Problem
	add := func(path, format string, args ...any) {
		own = append(own, problem.Problem{Path: path, Message: fmt.Sprintf(format, args...)})
	}
	ca := c.ClientAuth
	switch ca.Method {
	case "", AuthClientSecret:
		if c.ClientSecret == "" {
			add("client_secret", "is required (or set client_auth.method to certificate)")
		}
		for path, v := range map[string]string{"certificate_file": ca.CertificateFile, "key_file": ca.KeyFile, "algorithm": ca.Algorithm} {
			if v != "" {
				add("client_auth."+path, "is only for client_auth.method certificate")
			}
		}
	case AuthCertificate:
		if c.ClientSecret != "" {
			add("client_secret", "must be empty with client_auth.method certificate")
		}
		if ca.CertificateFile == "" {
			add("client_auth.certificate_file", "is required with client_auth.method certificate (the PEM certificate uploaded to the app registration)")
		}
		if ca.KeyFile == "" {
			add("client_auth.key_file", "is required with client_auth.method certificate (the certificate's PEM private key)")
		}
		switch ca.Algorithm {
		case "", "PS256", "RS256":
		default:
			add("client_auth.algorithm", "must be PS256 or RS256 (what Entra accepts), not %q", ca.Algorithm)
		}
	default:
		add("client_auth.method", "must be client_secret or certificate, not %q", ca.Method)
	}
	taken := map[string]bool{"client_secret": true, "client_auth.method": true}
	for _, p := range own {
		taken[p.Path] = true
	}
	out := own
	for _, p := range base {
		if !taken[p.Path] {
			out = append(out, p)
		}
	}
	return out
}
