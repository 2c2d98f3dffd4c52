package platformtest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apiserver/pkg/apis/apiserver"
	"k8s.io/apiserver/pkg/apis/apiserver/install"
	"k8s.io/apiserver/pkg/apis/apiserver/validation"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	authenticationcel "k8s.io/apiserver/pkg/authentication/cel"
	tokenunion "k8s.io/apiserver/pkg/authentication/token/union"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/server/dynamiccertificates"
	"k8s.io/apiserver/plugin/pkg/authenticator/token/oidc"
)

// The cluster's own service-account issuer. kube-apiserver refuses a JWT
// authenticator for it, and uses it as the API audience of tokens whose
// authenticator does not check audiences itself.
const clusterServiceAccountIssuer = "https://kubernetes.default.svc.cluster.local"

// The --authentication-config file is decoded with the API server's own
// scheme: strict, and converted from its apiVersion to the internal type.
var (
	authnConfigScheme = runtime.NewScheme()
	authnConfigCodecs = serializer.NewCodecFactory(authnConfigScheme, serializer.EnableStrict)
)

func init() { install.Install(authnConfigScheme) }

// loadAuthenticationConfiguration decodes an AuthenticationConfiguration
// document as kube-apiserver decodes its --authentication-config file.
func loadAuthenticationConfiguration(data []byte) (*apiserver.AuthenticationConfiguration, error) {
	obj, err := runtime.Decode(authnConfigCodecs.UniversalDecoder(), data)
	if err != nil {
		return nil, err
	}
	cfg, ok := obj.(*apiserver.AuthenticationConfiguration)
	if !ok || cfg == nil {
		return nil, fmt.Errorf("expected an AuthenticationConfiguration, got %T", obj)
	}
	return cfg, nil
}

// kubeAuthenticator is the bearer-token authentication of a kube-apiserver
// started with --authentication-config: one JWT authenticator per `jwt`
// entry, tried in order, the first error ending the chain.
type kubeAuthenticator struct {
	token  authenticator.Token
	health []oidc.AuthenticatorTokenWithHealthCheck
}

// newKubeAuthenticator builds the authenticator from an
// AuthenticationConfiguration document the way kube-apiserver does:
// decoded and validated (CEL expressions compiled and type-checked), each
// certificateAuthority as static CA content, every signing algorithm the
// API server knows allowed (kube-apiserver's choice with a configuration
// file), and the result wrapped to accept the API audiences. It waits until
// every authenticator has read its issuer's discovery document.
func newKubeAuthenticator(t *testing.T, document string) *kubeAuthenticator {
	t.Helper()
	cfg, err := loadAuthenticationConfiguration([]byte(document))
	if err != nil {
		t.Fatalf("loading the authentication configuration: %v", err)
	}
	disallowed := []string{clusterServiceAccountIssuer}
	if err := validation.ValidateAuthenticationConfiguration(authenticationcel.NewDefaultCompiler(), cfg, disallowed).ToAggregate(); err != nil {
		t.Fatalf("invalid authentication configuration: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	k := &kubeAuthenticator{}
	var chain []authenticator.Token
	for _, jwt := range cfg.JWT {
		var ca oidc.CAContentProvider
		if jwt.Issuer.CertificateAuthority != "" {
			if ca, err = dynamiccertificates.NewStaticCAContent("oidc-authenticator", []byte(jwt.Issuer.CertificateAuthority)); err != nil {
				t.Fatalf("certificateAuthority of %s: %v", jwt.Issuer.URL, err)
			}
		}
		a, err := oidc.New(ctx, oidc.Options{
			JWTAuthenticator:     jwt,
			CAContentProvider:    ca,
			SupportedSigningAlgs: oidc.AllValidSigningAlgorithms(),
			DisallowedIssuers:    disallowed,
			APIServerID:          "platformtest",
		})
		if err != nil {
			t.Fatalf("oidc.New for %s: %v", jwt.Issuer.URL, err)
		}
		chain = append(chain, a)
		k.health = append(k.health, a)
	}
	k.token = authenticator.WrapAudienceAgnosticToken(authenticator.Audiences{clusterServiceAccountIssuer}, tokenunion.NewFailOnError(chain...))
	k.waitReady(t, time.Minute)
	return k
}

// waitReady waits until every JWT authenticator is initialized: they fetch
// their issuer's discovery document in the background, and their health
// check fails until they have.
func (k *kubeAuthenticator) waitReady(t *testing.T, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var errs []error
		for _, a := range k.health {
			if err := a.HealthCheck(); err != nil {
				errs = append(errs, err)
			}
		}
		if len(errs) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the JWT authenticators are not ready after %s: %v", timeout, errors.Join(errs...))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// authenticate presents token as a request's bearer token would be.
func (k *kubeAuthenticator) authenticate(token string) (user.Info, bool, error) {
	resp, ok, err := k.token.AuthenticateToken(context.Background(), token)
	if err != nil || !ok {
		return nil, ok, err
	}
	return resp.User, true, nil
}

// mustAuthenticate returns the user token authenticates as, or fails.
func (k *kubeAuthenticator) mustAuthenticate(t *testing.T, token string) user.Info {
	t.Helper()
	u, ok, err := k.authenticate(token)
	if err != nil || !ok {
		t.Fatalf("the API server refused the token (ok %v): %v", ok, err)
	}
	return u
}

// mustRefuse checks that token does not authenticate, and that the
// refusal's error contains reason ("" for a token the authenticator
// declines without error: another issuer's).
func (k *kubeAuthenticator) mustRefuse(t *testing.T, token, reason string) {
	t.Helper()
	u, ok, err := k.authenticate(token)
	switch {
	case ok:
		t.Fatalf("the API server accepted the token as %q %v", u.GetName(), u.GetGroups())
	case reason == "" && err != nil:
		t.Fatalf("refused with %v, want the token declined as not this issuer's", err)
	case reason != "" && err == nil:
		t.Fatalf("declined without an error, want a refusal for %q", reason)
	case reason != "" && !strings.Contains(err.Error(), reason):
		t.Fatalf("refused with %v, want a refusal for %q", err, reason)
	case err != nil:
		t.Logf("refused: %v", err)
	default:
		t.Logf("declined: not a token of a trusted issuer")
	}
}
