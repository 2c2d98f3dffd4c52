package testidp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/oauth2"
)

func start(t *testing.T) (*IdP, *oauth2.Config) {
	t.Helper()
	p := New(Options{PageSize: 2})
	t.Cleanup(p.Close)
	p.SetUser(User{Subject: "u1", Claims: map[string]any{"email": "u1@example.com", "oid": "o1"},
		Groups: []Group{{ID: "g1", DisplayName: "one"}, {ID: "g2", DisplayName: "two"}, {ID: "g3", DisplayName: "three"}}})
	return p, &oauth2.Config{
		ClientID: p.ClientID(), ClientSecret: p.ClientSecret(), RedirectURL: "https://rp.example/cb",
		Endpoint: oauth2.Endpoint{AuthURL: p.URL() + "/authorize", TokenURL: p.URL() + "/token"},
		Scopes:   []string{"openid", "offline_access"},
	}
}

// code runs /authorize and returns the code.
func code(t *testing.T, oc *oauth2.Config, verifier string) string {
	t.Helper()
	r, err := CallbackRequest(context.Background(), oc.AuthCodeURL("st", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("nonce", "n1")))
	if err != nil {
		t.Fatal(err)
	}
	if e := r.URL.Query().Get("error"); e != "" {
		t.Fatalf("authorize error = %s", e)
	}
	return r.URL.Query().Get("code")
}

func TestCodeFlow(t *testing.T) {
	p, oc := start(t)
	ctx := context.Background()
	v := oauth2.GenerateVerifier()
	c := code(t, oc, v)
	if _, err := oc.Exchange(ctx, code(t, oc, v), oauth2.VerifierOption("wrong-verifier-wrong-verifier-wrong-verifier")); err == nil {
		t.Error("Exchange with a wrong PKCE verifier succeeded")
	}
	tok, err := oc.Exchange(ctx, c, oauth2.VerifierOption(v))
	if err != nil {
		t.Fatalf("Exchange() error = %v", err)
	}
	if _, err := oc.Exchange(ctx, c, oauth2.VerifierOption(v)); err == nil {
		t.Error("second Exchange of one code succeeded")
	}
	raw, _ := tok.Extra("id_token").(string)
	parsed, err := jwt.ParseSigned(raw, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatalf("id_token: %v", err)
	}
	var set jose.JSONWebKeySet
	getJSON(t, p.URL()+"/keys", "", &set)
	var claims map[string]any
	if err := parsed.Claims(set.Keys[0].Key, &claims); err != nil {
		t.Fatalf("id_token does not verify with the published key: %v", err)
	}
	if claims["sub"] != "u1" || claims["nonce"] != "n1" || claims["iss"] != p.URL() || claims["aud"] != p.ClientID() {
		t.Errorf("id_token claims = %v", claims)
	}
	if tok.RefreshToken == "" {
		t.Fatal("no refresh token with offline_access")
	}
	rt := tok.RefreshToken
	tok2, err := oc.TokenSource(ctx, &oauth2.Token{RefreshToken: rt}).Token()
	if err != nil || tok2.RefreshToken == rt {
		t.Fatalf("refresh = %v, %v; want a rotated refresh token", tok2, err)
	}
	if _, err := oc.TokenSource(ctx, &oauth2.Token{RefreshToken: rt}).Token(); err == nil {
		t.Error("reuse of a rotated refresh token succeeded")
	}
	p.DisableUser("u1")
	_, err = oc.TokenSource(ctx, &oauth2.Token{RefreshToken: tok2.RefreshToken}).Token()
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" {
		t.Errorf("refresh of a disabled user error = %v, want invalid_grant", err)
	}
}

func TestAuthorizeRejects(t *testing.T) {
	p, oc := start(t)
	for name, u := range map[string]string{
		"no pkce":    oc.AuthCodeURL("st"),
		"plain pkce": oc.AuthCodeURL("st", oauth2.SetAuthURLParam("code_challenge", "x"), oauth2.SetAuthURLParam("code_challenge_method", "plain")),
	} {
		r, err := CallbackRequest(context.Background(), u)
		if err != nil {
			t.Fatal(err)
		}
		if got := r.URL.Query().Get("error"); got != "invalid_request" {
			t.Errorf("%s: error = %q, want invalid_request", name, got)
		}
	}
	p.SetAuthorizeError("access_denied")
	r, err := CallbackRequest(context.Background(), oc.AuthCodeURL("st", oauth2.S256ChallengeOption("v")))
	if err != nil {
		t.Fatal(err)
	}
	if q := r.URL.Query(); q.Get("error") != "access_denied" || q.Get("state") != "st" {
		t.Errorf("callback query = %v, want error=access_denied with state", q)
	}
	bad := *oc
	bad.ClientID = "other"
	if _, err := CallbackRequest(context.Background(), bad.AuthCodeURL("st")); err == nil {
		t.Error("authorize for an unknown client redirected")
	}
}

func TestDiscoveryUnderPrefix(t *testing.T) {
	p, _ := start(t)
	p.SetIssuer(p.URL() + "/tenant/v2.0")
	var doc map[string]any
	getJSON(t, p.URL()+"/tenant/v2.0/.well-known/openid-configuration", "", &doc)
	if doc["issuer"] != p.URL()+"/tenant/v2.0" || doc["jwks_uri"] != p.URL()+"/keys" {
		t.Errorf("discovery = %v", doc)
	}
}

func TestRotateKey(t *testing.T) {
	p, _ := start(t)
	var before, after jose.JSONWebKeySet
	getJSON(t, p.URL()+"/keys", "", &before)
	kid := p.RotateKey()
	getJSON(t, p.URL()+"/keys", "", &after)
	if len(after.Keys) != 1 || after.Keys[0].KeyID != kid || kid == before.Keys[0].KeyID {
		t.Errorf("keys after RotateKey = %v, want only %s", after.Keys, kid)
	}
	if p.KeyFetches() != 2 {
		t.Errorf("KeyFetches() = %d, want 2", p.KeyFetches())
	}
}

func TestGraphPaging(t *testing.T) {
	p, oc := start(t)
	v := oauth2.GenerateVerifier()
	tok, err := oc.Exchange(context.Background(), code(t, oc, v), oauth2.VerifierOption(v))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	next := p.URL() + "/v1.0/users/o1/transitiveMemberOf"
	for pages := 0; next != ""; pages++ {
		if pages > 5 {
			t.Fatal("too many pages")
		}
		var page struct {
			Value []struct {
				Type string `json:"@odata.type"`
				ID   string `json:"id"`
			} `json:"value"`
			Next string `json:"@odata.nextLink"`
		}
		getJSON(t, next, tok.AccessToken, &page)
		for _, v := range page.Value {
			if v.Type == "#microsoft.graph.group" {
				ids = append(ids, v.ID)
			}
		}
		next = page.Next
	}
	if got := strings.Join(ids, ","); got != "g1,g2,g3" {
		t.Errorf("groups = %s, want g1,g2,g3", got)
	}
	resp, err := http.Get(p.URL() + "/v1.0/users/o1/transitiveMemberOf")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("graph without a token: status %d, want 401", resp.StatusCode)
	}
}

func TestDirectoryNeedsServiceAccount(t *testing.T) {
	p, oc := start(t)
	v := oauth2.GenerateVerifier()
	tok, err := oc.Exchange(context.Background(), code(t, oc, v), oauth2.VerifierOption(v))
	if err != nil {
		t.Fatal(err)
	}
	u := p.URL() + "/admin/directory/v1/groups?" + url.Values{"userKey": {"u1@example.com"}}.Encode()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("directory with a user token: status %d, want 403", resp.StatusCode)
	}
}

func getJSON(t *testing.T, u, bearer string, v any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d", u, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(fmt.Errorf("GET %s: %w", u, err))
	}
}
