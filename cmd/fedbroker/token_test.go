package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/fedbroker/fedbroker/broker"
	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/keys"
	"github.com/fedbroker/fedbroker/broker/storage/memory"
	"github.com/fedbroker/fedbroker/connectors/workload/workloadtest"
)

const tokenTestSecret = "token-test-secret-0123456789"

// tokenBroker starts a broker over TLS with an aws-profiled client "robot"
// (client_credentials and token exchange of workload "wl") and returns its
// issuer, a file with its certificate and the workload issuer.
func tokenBroker(t *testing.T) (issuer, caFile string, wl *workloadtest.Issuer) {
	t.Helper()
	wl = workloadtest.New()
	t.Cleanup(wl.Close)
	hash, err := config.HashSecret(tokenTestSecret)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(nil)
	issuer = "https://" + srv.Listener.Addr().String()
	yml := fmt.Sprintf(`
issuer: %s
storage: {type: memory}
signing: {algorithm: ES256, algorithms: [RS256]}
mappings:
  wl:
    subject: '"wl:" + claims.sub'
workloads:
  - id: wl
    mapping: wl
    config: {issuer: %q, audiences: [https://sso.acme.com], algorithms: [RS256]}
clients:
  - id: robot
    secret_hash: %q
    profile: aws
    audiences: [sts.amazonaws.com]
    scopes: [deploy]
    grant_types: [client_credentials, urn:ietf:params:oauth:grant-type:token-exchange]
    workloads: [wl]
`, issuer, wl.URL(), hash)
	cfg, err := config.Parse([]byte(yml), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	store := memory.New()
	km, err := keys.New(ctx, store, keys.Options{Algorithm: cfg.Signing.Algorithm, Algorithms: cfg.Signing.Algorithms, MaxTokenLifetime: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	b, err := broker.New(ctx, cfg, broker.Options{Storage: store, Keys: km})
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = b.Handler()
	srv.StartTLS()
	t.Cleanup(srv.Close)
	caFile = writeFile(t, t.TempDir(), "ca.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})))
	return issuer, caFile, wl
}

// printedClaims are the claims `fedbroker token` printed.
func printedClaims(t *testing.T, out string) map[string]any {
	t.Helper()
	_, rest, ok := strings.Cut(out, "claims:\n")
	if !ok {
		t.Fatalf("no claims in:\n%s", out)
	}
	body, _, _ := strings.Cut(rest, "\n}\n")
	var m map[string]any
	if err := json.Unmarshal([]byte(body+"\n}"), &m); err != nil {
		t.Fatalf("claims %q: %v", body, err)
	}
	return m
}

func TestTokenClientCredentials(t *testing.T) {
	issuer, ca, _ := tokenBroker(t)
	secretFile := writeFile(t, t.TempDir(), "secret", tokenTestSecret+"\n")
	code, out, errOut := run(t, "", "token", "--issuer", issuer, "--client-id", "robot", "--client-secret-file", secretFile, "--ca-file", ca, "--scope", "deploy")
	if code != 0 {
		t.Fatalf("exit %d: %s\n%s", code, errOut, out)
	}
	for _, want := range []string{"token_type: Bearer", "scope: deploy", `"alg": "RS256"`, `"typ": "at+jwt"`, "\nverified: "} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	c := printedClaims(t, out)
	if c["aud"] != "sts.amazonaws.com" || c["sub"] != "robot" || c["iss"] != issuer {
		t.Errorf("claims = %v", c)
	}

	t.Setenv("ROBOT_SECRET", tokenTestSecret)
	if code, out, errOut := run(t, "", "token", "--issuer", issuer+"/", "--client-id", "robot", "--client-secret-env", "ROBOT_SECRET", "--ca-file", ca); code != 0 || !strings.Contains(out, "verified: ") {
		t.Errorf("with the secret from the environment: exit %d: %s\n%s", code, errOut, out)
	}
}

func TestTokenExchange(t *testing.T) {
	issuer, ca, wl := tokenBroker(t)
	now := time.Now()
	subject, err := wl.Sign(jose.RS256, map[string]any{"iss": wl.URL(), "aud": "https://sso.acme.com", "sub": "job-7", "iat": now.Unix(), "exp": now.Add(time.Minute).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	t.Setenv("ROBOT_SECRET", tokenTestSecret)
	code, out, errOut := run(t, "", "token", "--issuer", issuer, "--client-id", "robot", "--client-secret-env", "ROBOT_SECRET", "--ca-file", ca,
		"--grant", "token-exchange", "--subject-token-file", writeFile(t, dir, "sub.jwt", subject), "--subject-token-type", "jwt", "--audience", "sts.amazonaws.com")
	if code != 0 {
		t.Fatalf("exit %d: %s\n%s", code, errOut, out)
	}
	if !strings.Contains(out, "issued_token_type: urn:ietf:params:oauth:token-type:access_token") || !strings.Contains(out, "\nverified: ") {
		t.Errorf("output:\n%s", out)
	}
	if c := printedClaims(t, out); c["sub"] != "wl:job-7" || c["aud"] != "sts.amazonaws.com" {
		t.Errorf("claims = %v", c)
	}
}

func TestTokenErrors(t *testing.T) {
	issuer, ca, _ := tokenBroker(t)
	dir := t.TempDir()
	good := writeFile(t, dir, "good", tokenTestSecret)
	bad := writeFile(t, dir, "bad", "not-the-secret")
	junkToken := writeFile(t, dir, "junk.jwt", "junk")
	down := "http://" + freeAddr(t)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"wrong secret", []string{"--issuer", issuer, "--client-id", "robot", "--client-secret-file", bad, "--ca-file", ca}, "the broker refused (401 Unauthorized): invalid_client"},
		{"scope not allowed", []string{"--issuer", issuer, "--client-id", "robot", "--client-secret-file", good, "--ca-file", ca, "--scope", "admin"}, "the broker refused (400 Bad Request): invalid_scope"},
		{"bad subject token", []string{"--issuer", issuer, "--client-id", "robot", "--client-secret-file", good, "--ca-file", ca, "--grant", "token-exchange", "--subject-token-file", junkToken}, "invalid_request"},
		{"unreachable issuer", []string{"--issuer", down, "--client-id", "robot", "--client-secret-file", good}, "cannot reach the issuer"},
		{"untrusted certificate", []string{"--issuer", issuer, "--client-id", "robot", "--client-secret-file", good}, "cannot reach the issuer"},
		{"no secret", []string{"--issuer", issuer, "--client-id", "robot"}, "--client-secret-file or --client-secret-env"},
		{"exchange without subject", []string{"--issuer", issuer, "--client-id", "robot", "--client-secret-file", good, "--grant", "token-exchange"}, "needs --subject-token-file"},
		{"unknown grant", []string{"--issuer", issuer, "--client-id", "robot", "--client-secret-file", good, "--grant", "password"}, `unknown --grant "password"`},
		{"no issuer", []string{"--client-id", "robot", "--client-secret-file", good}, "--issuer and --client-id are required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := run(t, "", append([]string{"token"}, tt.args...)...)
			if code != 1 || !strings.Contains(errOut, "token: ") || !strings.Contains(errOut, tt.want) {
				t.Errorf("exit %d, stderr %q, want 1 and %q (stdout %q)", code, errOut, tt.want, out)
			}
		})
	}
}

// TestTokenNotVerified: a token endpoint answering with a token the
// issuer's keys do not verify is printed, and the command says why and
// fails.
func TestTokenNotVerified(t *testing.T) {
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/.well-known/openid-configuration":
			fmt.Fprintf(w, `{"issuer":%q,"token_endpoint":%q,"jwks_uri":%q,"authorization_endpoint":%q,"id_token_signing_alg_values_supported":["ES256"]}`,
				srv.URL, srv.URL+"/token", srv.URL+"/keys", srv.URL+"/authorize")
		case "/keys":
			fmt.Fprint(w, `{"keys":[]}`)
		case "/token":
			claims := fmt.Sprintf(`{"iss":%q,"sub":"x","exp":%d}`, srv.URL, time.Now().Add(time.Minute).Unix())
			tok := b64json(`{"alg":"ES256","kid":"k"}`) + "." + b64json(claims) + ".c2lnbmF0dXJl"
			fmt.Fprintf(w, `{"access_token":%q,"token_type":"Bearer","expires_in":60}`, tok)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	t.Setenv("ROBOT_SECRET", "x")
	code, out, errOut := run(t, "", "token", "--issuer", srv.URL, "--client-id", "robot", "--client-secret-env", "ROBOT_SECRET")
	if code != 1 || !strings.Contains(out, "not verified: ") || !strings.Contains(out, `"sub": "x"`) {
		t.Errorf("exit %d, stdout %q, stderr %q; want the claims printed, not verified, exit 1", code, out, errOut)
	}
}

func b64json(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
