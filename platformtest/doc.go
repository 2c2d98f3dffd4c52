// Package platformtest checks that the platforms of a hybrid cloud accept
// the broker's tokens with their own verification code, not with the
// broker's.
//
// Its tests run the Kubernetes API server's JWT authenticator
// (k8s.io/apiserver/plugin/pkg/authenticator/token/oidc), configured from
// an AuthenticationConfiguration document the way kube-apiserver loads its
// --authentication-config file, against a broker served over HTTPS in the
// test process:
//
//   - a person signs in through the browser flow (authorization code with
//     PKCE, a password at the local connector) and the ID token the broker
//     issues authenticates them with the username and groups that the
//     configuration's CEL claim mappings derive from it;
//   - a workload presents a service-account token from another cluster
//     (a go-jose-signed JWT with discovery and JWKS) and exchanges it
//     (RFC 8693) for the broker's access token, which authenticates it
//     under a service identity;
//   - expired tokens, tokens for another audience, tokens of another issuer
//     or signed by another issuer's key, tampered tokens and tokens that
//     fail the configuration's claim validation rules are refused, each
//     for its own reason.
//
// It is a module of its own so that the main module does not depend on
// k8s.io/apiserver; its go.mod replaces github.com/fedbroker/fedbroker with
// the directory above. The package has tests only.
package platformtest
