package e2e

// Token helpers of the shared-state tests: JWKS of one replica, signature
// checks against it, introspection and userinfo on every replica.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

var stateAlgs = []jose.SignatureAlgorithm{jose.ES256, jose.RS256, jose.EdDSA}

// jwksOf fetches a replica's JWKS (no cache: what a relying party fetching
// now gets).
func jwksOf(base string) (jose.JSONWebKeySet, error) {
	var set jose.JSONWebKeySet
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(base + "/keys")
	if err != nil {
		return set, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return set, fmt.Errorf("GET %s/keys = %d %.200s", base, resp.StatusCode, body)
	}
	err = json.Unmarshal(body, &set)
	return set, err
}

// kidSet returns the key ids of set, sorted.
func kidSet(set jose.JSONWebKeySet) []string {
	var out []string
	for _, k := range set.Keys {
		out = append(out, k.KeyID)
	}
	sort.Strings(out)
	return out
}

// kidsAt returns the key ids a replica publishes now.
func kidsAt(t testing.TB, base string) []string {
	t.Helper()
	set, err := jwksOf(base)
	if err != nil {
		t.Fatalf("JWKS of %s: %v", base, err)
	}
	return kidSet(set)
}

// header returns a JWS's kid and alg without checking anything.
func header(t testing.TB, token string) (kid, alg string) {
	t.Helper()
	jws, err := jose.ParseSignedCompact(token, stateAlgs)
	if err != nil {
		t.Fatalf("parse token %.40q: %v", token, err)
	}
	h := jws.Signatures[0].Header
	return h.KeyID, h.Algorithm
}

// verifyAgainst checks token's signature with the key its kid names in
// the JWKS base publishes now.
func verifyAgainst(token, base string) error {
	set, err := jwksOf(base)
	if err != nil {
		return err
	}
	jws, err := jose.ParseSignedCompact(token, stateAlgs)
	if err != nil {
		return err
	}
	kid := jws.Signatures[0].Header.KeyID
	keys := set.Key(kid)
	if len(keys) == 0 {
		return fmt.Errorf("kid %q not in the JWKS of %s (%v)", kid, base, kidSet(set))
	}
	if _, err := jws.Verify(keys[0]); err != nil {
		return fmt.Errorf("kid %q: %w", kid, err)
	}
	return nil
}

// signingKid is the kid of a client_credentials token issued by base now.
func signingKid(t testing.TB, base string) string {
	t.Helper()
	tr, err := clientCredentials(base)
	if err != nil || tr.status != http.StatusOK {
		t.Fatalf("client_credentials at %s = %+v, %v; want 200", base, tr, err)
	}
	kid, _ := header(t, tr.AccessToken)
	return kid
}

// activeAt returns introspection's "active" for token at base (an error
// for anything but a 200 JSON answer).
func activeAt(base, token string) (bool, error) {
	code, m, err := introspect(base, token)
	if err != nil {
		return false, err
	}
	if code != http.StatusOK {
		return false, fmt.Errorf("introspect at %s = %d %v", base, code, m)
	}
	active, _ := m["active"].(bool)
	return active, nil
}

// userinfoStatus returns the status of GET /userinfo with token.
func userinfoStatus(base, token string) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/userinfo", nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	discard(resp)
	return resp.StatusCode, nil
}

// revokeToken revokes token (a refresh or access token of app) at base.
func revokeToken(t testing.TB, base, token string) {
	t.Helper()
	code, body, err := revoke(base, token)
	if err != nil || code != http.StatusOK {
		t.Fatalf("revoke at %s = %d %s, %v; want 200", base, code, body, err)
	}
}

// wantInvalidGrant checks that refreshing rt at base answers 400
// invalid_grant.
func wantInvalidGrant(t testing.TB, what, base, rt string) {
	t.Helper()
	tr, err := refresh(base, rt)
	if err != nil || tr.status != http.StatusBadRequest || tr.Error != "invalid_grant" {
		t.Errorf("refresh with %s at %s = %d %s %s (%v), want 400 invalid_grant", what, base, tr.status, tr.Error, tr.Description, err)
	}
}

// wantActiveEverywhere checks introspection of token on every replica.
func wantActiveEverywhere(t testing.TB, what string, nodes []*stateReplica, token string, want bool) {
	t.Helper()
	for i, r := range nodes {
		got, err := activeAt(r.URL, token)
		if err != nil || got != want {
			t.Errorf("introspect %s at replica %d = active:%v (%v), want active:%v", what, i, got, err, want)
		}
	}
}

// discoveryAlgs returns id_token_signing_alg_values_supported at base.
func discoveryAlgs(t testing.TB, base string) []string {
	t.Helper()
	code, body := get(t, base+"/.well-known/openid-configuration")
	if code != http.StatusOK {
		t.Fatalf("discovery at %s = %d %.200s", base, code, body)
	}
	var d struct {
		Algs []string `json:"id_token_signing_alg_values_supported"`
	}
	if err := json.Unmarshal([]byte(body), &d); err != nil {
		t.Fatalf("discovery at %s: %v", base, err)
	}
	return d.Algs
}

// readyStatus returns the status and body of GET /readyz, 0 when the
// replica does not answer.
func readyStatus(base string) (int, string) {
	code, body, err := getStatus(base + "/readyz")
	if err != nil {
		return 0, err.Error()
	}
	return code, body
}

// containsAll reports the members of want missing from have.
func missingFrom(have, want []string) []string {
	var out []string
	for _, w := range want {
		if !slices.Contains(have, w) {
			out = append(out, w)
		}
	}
	return out
}

// errorLines returns the ERROR records of r whose message contains every
// one of words (case-insensitive).
func errorLines(r *stateReplica, words ...string) []logRecord {
	return r.find(func(rec logRecord) bool {
		if rec.str("level") != "ERROR" {
			return false
		}
		msg := strings.ToLower(rec.str("msg") + " " + rec.str("err"))
		for _, w := range words {
			if !strings.Contains(msg, strings.ToLower(w)) {
				return false
			}
		}
		return true
	})
}
