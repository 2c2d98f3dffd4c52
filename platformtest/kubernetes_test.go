package platformtest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/crypto/bcrypt"

	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/connectors/workload/workloadtest"
)

const (
	alicePassword = "correct horse battery staple"
	bobPassword   = "bob's unverified password"
	deployerID    = "deployer"
	auditorID     = "auditor"
	// kubectlRedirect is where kubectl's OIDC login plugin listens by
	// default; a public client's loopback redirect matches any port.
	kubectlRedirect = "http://127.0.0.1:8000/callback"
	// kubeAudience is the audience the cluster accepts, and the id of the
	// public client kubectl signs in with (an ID token's aud).
	kubeAudience = "kubernetes"
)

var (
	deployerSecret = strings.Repeat("deployer-secret-", 3)
	auditorSecret  = strings.Repeat("auditor-secret-", 3)
)

// secrets are the bcrypt password hashes and client secret hashes the
// broker configuration names.
type secrets struct{ alice, bob, deployer, auditor string }

func newSecrets(t *testing.T) secrets {
	t.Helper()
	var s secrets
	for _, h := range []struct {
		dst      *string
		password string
	}{{&s.alice, alicePassword}, {&s.bob, bobPassword}} {
		b, err := bcrypt.GenerateFromPassword([]byte(h.password), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		*h.dst = string(b)
	}
	var err error
	if s.deployer, err = config.HashSecret(deployerSecret); err != nil {
		t.Fatal(err)
	}
	if s.auditor, err = config.HashSecret(auditorSecret); err != nil {
		t.Fatal(err)
	}
	return s
}

// brokerConfig is the broker's configuration: staff sign in at a local
// connector (alice with a verified email, bob without); service accounts
// of the "edge" cluster are a trusted workload issuer. Every client has
// `profile: kubernetes`: kubectl signs in as the public client
// "kubernetes" and gets the profile's preferred algorithm, RS256 (what
// kube-apiserver's --oidc-signing-algs defaults to), while the deployer
// asks for ES256, the other algorithm the profile allows, which the
// broker signs with by default.
func brokerConfig(issuer, edgeIssuer string, s secrets) string {
	return fmt.Sprintf(`
issuer: %[1]s
storage:
  type: memory
signing:
  algorithm: ES256
  algorithms: [RS256]
connectors:
  - id: local
    type: local
    name: Staff accounts
    mapping: staff
    config:
      users:
        - username: alice
          password_hash: %[3]q
          email: Alice@Acme.com
          groups: [k8s-admins, eng]
        - username: bob
          password_hash: %[4]q
          email: bob@acme.com
          email_verified: false
          groups: [eng]
workloads:
  - id: edge-cluster
    mapping: edge-workloads
    config:
      issuer: %[2]s
      audiences: [fedbroker]
      algorithms: [RS256]
      max_lifetime: 1h
mappings:
  staff:
    claims:
      email: claims.email.lowerAscii()
      email_verified: claims.email_verified
      groups: claims.?groups.orValue([])
  edge-workloads:
    require:
      - expr: claims["kubernetes.io"].namespace == "deploy"
        message: only service accounts of the deploy namespace act on other clusters
    subject: '"workload:edge:" + claims["kubernetes.io"].namespace + ":" + claims["kubernetes.io"].serviceaccount.name'
clients:
  - id: %[7]s
    name: kubectl
    public: true
    redirect_uris: ["http://127.0.0.1/callback"]
    profile: kubernetes
  - id: %[8]s
    name: Deployment pipeline
    secret_hash: %[5]q
    profile: kubernetes
    id_token_signed_response_alg: ES256
    grant_types: [urn:ietf:params:oauth:grant-type:token-exchange]
    workloads: [edge-cluster]
    audiences: [%[7]s, metrics-api]
  - id: %[9]s
    name: Audit collector
    secret_hash: %[6]q
    profile: kubernetes
    grant_types: [urn:ietf:params:oauth:grant-type:token-exchange]
    workloads: [edge-cluster]
    audiences: [%[7]s]
`, issuer, edgeIssuer, s.alice, s.bob, s.deployer, s.auditor, kubeAudience, deployerID, auditorID)
}

// authenticationConfiguration is the cluster's --authentication-config
// file: it trusts the broker for the "kubernetes" audience. People are
// named by their verified email and keep their groups, both prefixed so
// they cannot collide with the cluster's own users and groups; workloads
// (the broker's subjects "workload:...") get a service identity, and only
// when the deployer client exchanged their token.
func authenticationConfiguration(issuer, caPEM string) string {
	ca := "      " + strings.ReplaceAll(strings.TrimSpace(caPEM), "\n", "\n      ")
	return fmt.Sprintf(`apiVersion: apiserver.config.k8s.io/v1
kind: AuthenticationConfiguration
jwt:
- issuer:
    url: %s
    audiences: [%s]
    certificateAuthority: |
%s
  claimValidationRules:
  - expression: 'claims.sub.startsWith("workload:") || claims.?email_verified.orValue(false) == true'
    message: a person's email address must be verified
  - expression: '!claims.sub.startsWith("workload:") || claims.?client_id.orValue("") == "%s"'
    message: workloads are accepted only as exchanged by the deployer client
  claimMappings:
    username:
      expression: 'claims.sub.startsWith("workload:") ? "system:fedbroker:" + claims.sub : "fedbroker:" + claims.email'
    groups:
      expression: 'dyn(claims.?groups.orValue([])).map(g, "fedbroker:" + g)'
    uid:
      expression: claims.sub
    extra:
    - key: acme.com/client-id
      valueExpression: 'claims.?client_id.orValue(claims.azp)'
`, issuer, kubeAudience, ca, deployerID)
}

// serviceAccountToken is what the edge cluster's API server projects into
// a pod of namespace ns running as service account sa, for audience
// "fedbroker": a JWT signed with the cluster's RS256 key.
func serviceAccountToken(t *testing.T, edge *workloadtest.Issuer, ns, sa string, now time.Time) string {
	t.Helper()
	tok, err := edge.Sign(jose.RS256, map[string]any{
		"iss": edge.URL(),
		"sub": "system:serviceaccount:" + ns + ":" + sa,
		"aud": []string{"fedbroker"},
		"iat": now.Unix(),
		"nbf": now.Unix(),
		"exp": now.Add(10 * time.Minute).Unix(),
		"jti": randomString(12),
		"kubernetes.io": map[string]any{
			"namespace":      ns,
			"serviceaccount": map[string]any{"name": sa, "uid": "0d5c6a4e-7f6b-4a0e-9a51-" + randomString(6)},
			"pod":            map[string]any{"name": sa + "-7c9f8d6b5-x2x4k", "uid": "5b7f1f0e-2c1d-4c55-8d0e-" + randomString(6)},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestKubernetesAPIServerAuthenticatesBrokerTokens runs the Kubernetes API
// server's JWT authenticator, configured by an AuthenticationConfiguration
// document with CEL claim mappings and validation rules, against a broker
// over HTTPS: a person's ID token from the browser sign-in and a workload's
// access token from token exchange authenticate as the expected users;
// expired, misaddressed, foreign, forged, tampered and rule-breaking tokens
// are refused, each for its own reason.
func TestKubernetesAPIServerAuthenticatesBrokerTokens(t *testing.T) {
	s := newSecrets(t)
	edge := workloadtest.New()
	t.Cleanup(edge.Close)

	// The broker starts with its clock ten minutes behind, so that the
	// first sign-in yields an ID token (lifetime 5m) that has expired by
	// the time the cluster sees it; then its clock is set right.
	clock := &offsetClock{}
	clock.set(-10 * time.Minute)
	b := startBroker(t, clock, func(issuer string) string { return brokerConfig(issuer, edge.URL(), s) })
	stale := b.signIn(t, kubeAudience, kubectlRedirect, "alice", alicePassword)
	clock.set(0)

	// Another broker, configured alike under its own issuer URL, which the
	// cluster does not trust.
	other := startBroker(t, &offsetClock{}, func(issuer string) string { return brokerConfig(issuer, edge.URL(), s) })

	kube := newKubeAuthenticator(t, authenticationConfiguration(b.issuer, b.caPEM()))

	alice := b.signIn(t, kubeAudience, kubectlRedirect, "alice", alicePassword)
	aliceClaims := claimsOf(t, alice.IDToken)

	t.Run("person", func(t *testing.T) {
		if alg := headerOf(t, alice.IDToken)["alg"]; alg != "RS256" {
			t.Errorf("ID token alg = %v, want RS256 (profile: kubernetes)", alg)
		}
		u := kube.mustAuthenticate(t, alice.IDToken)
		if got, want := u.GetName(), "fedbroker:alice@acme.com"; got != want {
			t.Errorf("username = %q, want %q", got, want)
		}
		if got, want := u.GetGroups(), []string{"fedbroker:k8s-admins", "fedbroker:eng"}; !slices.Equal(got, want) {
			t.Errorf("groups = %q, want %q", got, want)
		}
		if got := u.GetUID(); got == "" || got != aliceClaims["sub"] {
			t.Errorf("uid = %q, want the broker's subject %q", got, aliceClaims["sub"])
		}
		if got := u.GetExtra()["acme.com/client-id"]; !slices.Equal(got, []string{kubeAudience}) {
			t.Errorf("extra acme.com/client-id = %q, want [%s]", got, kubeAudience)
		}
	})

	deployerToken := func(t *testing.T, audience string) string {
		t.Helper()
		tr := b.exchange(t, deployerID, deployerSecret, serviceAccountToken(t, edge, "deploy", "release-bot", time.Now()), audience)
		if tr.status != http.StatusOK || tr.AccessToken == "" {
			t.Fatalf("token exchange for %s = %d %s (%s)", audience, tr.status, tr.Error, tr.Description)
		}
		return tr.AccessToken
	}

	t.Run("workload", func(t *testing.T) {
		at := deployerToken(t, kubeAudience)
		if h := headerOf(t, at); h["alg"] != "ES256" || h["typ"] != "at+jwt" {
			t.Errorf("access token header alg %v typ %v, want ES256 at+jwt", h["alg"], h["typ"])
		}
		u := kube.mustAuthenticate(t, at)
		if got, want := u.GetName(), "system:fedbroker:workload:edge:deploy:release-bot"; got != want {
			t.Errorf("username = %q, want %q", got, want)
		}
		if got := u.GetGroups(); len(got) != 0 {
			t.Errorf("groups = %q, want none", got)
		}
		if got, want := u.GetUID(), "workload:edge:deploy:release-bot"; got != want {
			t.Errorf("uid = %q, want %q", got, want)
		}
		if got := u.GetExtra()["acme.com/client-id"]; !slices.Equal(got, []string{deployerID}) {
			t.Errorf("extra acme.com/client-id = %q, want [%s]", got, deployerID)
		}
	})

	t.Run("refused", func(t *testing.T) {
		bob := b.signIn(t, kubeAudience, kubectlRedirect, "bob", bobPassword)
		if v := claimsOf(t, bob.IDToken)["email_verified"]; v != false {
			t.Fatalf("bob's ID token email_verified = %v, want false", v)
		}
		audited := b.exchange(t, auditorID, auditorSecret, serviceAccountToken(t, edge, "deploy", "release-bot", time.Now()), kubeAudience)
		if audited.status != http.StatusOK {
			t.Fatalf("auditor's token exchange = %d %s (%s)", audited.status, audited.Error, audited.Description)
		}
		foreign := other.signIn(t, kubeAudience, kubectlRedirect, "alice", alicePassword)

		// The other broker's key signing a token that claims this broker
		// as its issuer, with alice's claims.
		payload, err := json.Marshal(aliceClaims)
		if err != nil {
			t.Fatal(err)
		}
		forged, err := other.keys.Sign("RS256", payload, "JWT")
		if err != nil {
			t.Fatal(err)
		}

		tampered := map[string]any{}
		for k, v := range aliceClaims {
			tampered[k] = v
		}
		tampered["groups"] = []string{"k8s-admins", "eng", "cluster-admins"}

		if exp := int64(claimsOf(t, stale.IDToken)["exp"].(float64)); time.Unix(exp, 0).After(time.Now()) {
			t.Fatalf("the stale ID token expires at %s, in the future", time.Unix(exp, 0))
		}

		for _, tc := range []struct {
			name, token, reason string
		}{
			{"expired", stale.IDToken, "token is expired"},
			{"another audience", deployerToken(t, "metrics-api"), "expected audience"},
			{"another issuer", foreign.IDToken, ""},
			{"signed by another issuer's key", forged, "failed to verify signature"},
			{"tampered", withClaims(t, alice.IDToken, tampered), "failed to verify signature"},
			{"unverified email", bob.IDToken, "a person's email address must be verified"},
			{"workload exchanged by another client", audited.AccessToken, "workloads are accepted only as exchanged by the deployer client"},
		} {
			t.Run(tc.name, func(t *testing.T) { kube.mustRefuse(t, tc.token, tc.reason) })
		}

		// What was refused above was refused for that reason alone: the
		// same broker's untouched tokens still authenticate.
		kube.mustAuthenticate(t, alice.IDToken)
	})
}
