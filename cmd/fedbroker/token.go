package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/spf13/cobra"

	"github.com/fedbroker/fedbroker/jwa"
)

// tokenTypes are the short names --subject-token-type takes (RFC 8693 §3).
var tokenTypes = map[string]string{
	"jwt":          "urn:ietf:params:oauth:token-type:jwt",
	"access_token": "urn:ietf:params:oauth:token-type:access_token",
	"id_token":     "urn:ietf:params:oauth:token-type:id_token",
}

const grantTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"

type tokenOptions struct {
	issuer, clientID, secretFile, secretEnv string
	grant, subjectFile, subjectType         string
	audience, scope, caFile                 string
	timeout                                 time.Duration
}

// newTokenCmd mints a token from a running broker through its token
// endpoint, as a workload would, and shows what the platform receiving it
// will see.
func newTokenCmd() *cobra.Command {
	var o tokenOptions
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Get a token from a running broker (client_credentials or token exchange), print it decoded and verify it against the issuer's keys",
		Long: `Get a token from a running broker through its token endpoint (found in
its discovery document), print the raw token, its header and claims, and
verify it against the issuer's JWKS. Exits 1 when the broker cannot be
reached, refuses the request, or the token does not verify.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runToken(cmd.Context(), o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.issuer, "issuer", "", "the broker's issuer URL (required)")
	f.StringVar(&o.clientID, "client-id", "", "the client id (required)")
	f.StringVar(&o.secretFile, "client-secret-file", "", "a file holding the client secret")
	f.StringVar(&o.secretEnv, "client-secret-env", "", "an environment variable holding the client secret")
	f.StringVar(&o.grant, "grant", "client_credentials", "client_credentials or token-exchange")
	f.StringVar(&o.subjectFile, "subject-token-file", "", "token-exchange: a file holding the subject token")
	f.StringVar(&o.subjectType, "subject-token-type", "jwt", "token-exchange: jwt, access_token, id_token or a full token type URN")
	f.StringVar(&o.audience, "audience", "", "the audience to ask for")
	f.StringVar(&o.scope, "scope", "", "the scopes to ask for, space-separated")
	f.StringVar(&o.caFile, "ca-file", "", "PEM certificates to trust for the issuer's TLS, instead of the system's")
	f.DurationVar(&o.timeout, "timeout", 10*time.Second, "how long each request may take")
	return cmd
}

func runToken(ctx context.Context, o tokenOptions, stdout, stderr io.Writer) error {
	fail := func(format string, args ...any) error {
		fmt.Fprintf(stderr, "token: "+format+"\n", args...)
		return exitCode(1)
	}
	if o.issuer == "" || o.clientID == "" {
		return fail("--issuer and --client-id are required")
	}
	issuer := strings.TrimSuffix(o.issuer, "/")
	secret, err := clientSecret(o)
	if err != nil {
		return fail("%v", err)
	}
	form := url.Values{}
	switch o.grant {
	case "client_credentials":
		form.Set("grant_type", "client_credentials")
	case "token-exchange", grantTokenExchange:
		if o.subjectFile == "" {
			return fail("--grant token-exchange needs --subject-token-file")
		}
		raw, err := os.ReadFile(o.subjectFile)
		if err != nil {
			return fail("subject token: %v", err)
		}
		typ := o.subjectType
		if full, ok := tokenTypes[typ]; ok {
			typ = full
		}
		form.Set("grant_type", grantTokenExchange)
		form.Set("subject_token", strings.TrimSpace(string(raw)))
		form.Set("subject_token_type", typ)
	default:
		return fail("unknown --grant %q (want client_credentials or token-exchange)", o.grant)
	}
	if o.audience != "" {
		form.Set("audience", o.audience)
	}
	if o.scope != "" {
		form.Set("scope", o.scope)
	}
	client, err := httpClient(o)
	if err != nil {
		return fail("%v", err)
	}

	endpoint, err := tokenEndpoint(ctx, client, issuer)
	if err != nil {
		return fail("%v", err)
	}
	resp, err := requestToken(ctx, client, endpoint, o.clientID, secret, form)
	if err != nil {
		return fail("%v", err)
	}
	tok := resp.AccessToken
	fmt.Fprintf(stdout, "token_type: %s\nexpires_in: %d\n", resp.TokenType, resp.ExpiresIn)
	if resp.IssuedTokenType != "" {
		fmt.Fprintf(stdout, "issued_token_type: %s\n", resp.IssuedTokenType)
	}
	if resp.Scope != "" {
		fmt.Fprintf(stdout, "scope: %s\n", resp.Scope)
	}
	fmt.Fprintf(stdout, "token:\n%s\n", tok)
	header, claims, err := decodeJWT(tok)
	if err != nil {
		return fail("the token is not a JWT: %v", err)
	}
	fmt.Fprintf(stdout, "header:\n%s\nclaims:\n%s\n", header, claims)

	if err := verifyToken(oidc.ClientContext(ctx, client), issuer, tok); err != nil {
		fmt.Fprintf(stdout, "not verified: %v\n", err)
		return exitCode(1)
	}
	fmt.Fprintf(stdout, "verified: signature by the issuer's published key, iss %s, not expired\n", issuer)
	return nil
}

func clientSecret(o tokenOptions) (string, error) {
	switch {
	case o.secretFile != "" && o.secretEnv != "":
		return "", errors.New("use --client-secret-file or --client-secret-env, not both")
	case o.secretFile != "":
		b, err := os.ReadFile(o.secretFile)
		if err != nil {
			return "", fmt.Errorf("client secret: %w", err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	case o.secretEnv != "":
		s := os.Getenv(o.secretEnv)
		if s == "" {
			return "", fmt.Errorf("client secret: $%s is not set", o.secretEnv)
		}
		return s, nil
	}
	return "", errors.New("a confidential client's secret is needed: --client-secret-file or --client-secret-env")
}

func httpClient(o tokenOptions) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if o.caFile != "" {
		pem, err := os.ReadFile(o.caFile)
		if err != nil {
			return nil, fmt.Errorf("--ca-file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--ca-file %s: no PEM certificate in it", o.caFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: tr, Timeout: o.timeout}, nil
}

// tokenEndpoint reads the issuer's discovery document.
func tokenEndpoint(ctx context.Context, client *http.Client, issuer string) (string, error) {
	u := issuer + "/.well-known/openid-configuration"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", fmt.Errorf("issuer %q: %w", issuer, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("cannot reach the issuer: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("discovery %s answered %s", u, resp.Status)
	}
	var d struct {
		Issuer        string `json:"issuer"`
		TokenEndpoint string `json:"token_endpoint"`
	}
	if err := json.Unmarshal(body, &d); err != nil {
		return "", fmt.Errorf("discovery %s: not JSON: %v", u, err)
	}
	if d.Issuer != issuer {
		return "", fmt.Errorf("discovery %s names issuer %q, not %q", u, d.Issuer, issuer)
	}
	if d.TokenEndpoint == "" {
		return "", fmt.Errorf("discovery %s has no token_endpoint", u)
	}
	return d.TokenEndpoint, nil
}

type tokenAnswer struct {
	AccessToken     string `json:"access_token"`
	TokenType       string `json:"token_type"`
	ExpiresIn       int64  `json:"expires_in"`
	IssuedTokenType string `json:"issued_token_type"`
	Scope           string `json:"scope"`
	Error           string `json:"error"`
	Description     string `json:"error_description"`
}

// requestToken posts form to the token endpoint with client_secret_basic
// (id and secret form-encoded first, RFC 6749 §2.3.1).
func requestToken(ctx context.Context, client *http.Client, endpoint, id, secret string, form url.Values) (*tokenAnswer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, fmt.Errorf("token endpoint %q: %w", endpoint, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the token endpoint: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var a tokenAnswer
	jsonErr := json.Unmarshal(body, &a)
	switch {
	case resp.StatusCode != http.StatusOK && jsonErr == nil && a.Error != "":
		msg := fmt.Sprintf("the broker refused (%s): %s", resp.Status, a.Error)
		if a.Description != "" {
			msg += ": " + a.Description
		}
		return nil, errors.New(msg)
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("the token endpoint answered %s: %.200s", resp.Status, body)
	case jsonErr != nil:
		return nil, fmt.Errorf("the token endpoint answered with no JSON: %v", jsonErr)
	case a.AccessToken == "":
		return nil, errors.New("the token endpoint answered without access_token")
	}
	return &a, nil
}

// decodeJWT returns a compact JWS's header and claims, indented, without
// checking anything.
func decodeJWT(tok string) (header, claims string, err error) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return "", "", fmt.Errorf("%d parts, want 3", len(parts))
	}
	var out [2]string
	for i := range 2 {
		raw, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			return "", "", err
		}
		var buf bytes.Buffer
		if err := json.Indent(&buf, raw, "", "  "); err != nil {
			return "", "", err
		}
		out[i] = buf.String()
	}
	return out[0], out[1], nil
}

// verifyToken checks tok's signature against the keys of the issuer's
// discovery document, its iss and its exp (not its aud: that is the
// platform's to check).
func verifyToken(ctx context.Context, issuer, tok string) error {
	p, err := oidc.NewProvider(ctx, issuer)
	if err != nil {
		return fmt.Errorf("cannot read the issuer's discovery: %w", err)
	}
	v := p.Verifier(&oidc.Config{SkipClientIDCheck: true, SupportedSigningAlgs: jwa.Names()})
	if _, err := v.Verify(ctx, tok); err != nil {
		return err
	}
	return nil
}
