package config

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fedbroker/fedbroker/problem"
)

const gcpAudience = "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/hybrid/providers/fedbroker"

// profileConfig is a configuration with one client, the given profile and
// extra client lines, signing with signing (a YAML flow mapping).
func profileConfig(t *testing.T, signing, profile, extra string) string {
	t.Helper()
	return fmt.Sprintf(`
issuer: https://sso.example.com
signing: %s
clients:
  - id: robot
    secret_hash: %q
    grant_types: [client_credentials]
    profile: %s
%s`, signing, profileSecretHash(t), profile, extra)
}

var profileHash string

func profileSecretHash(t *testing.T) string {
	t.Helper()
	if profileHash == "" {
		h, err := HashSecret(strings.Repeat("profile-secret-", 3))
		if err != nil {
			t.Fatal(err)
		}
		profileHash = h
	}
	return profileHash
}

// problemPaths are the paths of err's problems.
func problemPaths(t *testing.T, err error) []string {
	t.Helper()
	if err == nil {
		return nil
	}
	var list problem.List
	if !errors.As(err, &list) {
		t.Fatalf("error %v is not a problem list", err)
	}
	var paths []string
	for _, p := range list {
		paths = append(paths, p.Path)
	}
	return paths
}

func TestProfileProblems(t *testing.T) {
	tests := []struct {
		name, signing, profile, extra string
		want                          []string
		wantMsg                       string
	}{
		{"unknown profile", "{}", "openshift", "", []string{"clients[0].profile"}, "want aws, azure, gcp, kubernetes, vault"},
		{"azure ES256 asked", "{algorithm: ES256, algorithms: [RS256]}", "azure", "    id_token_signed_response_alg: ES256\n",
			[]string{"clients[0].id_token_signed_response_alg"}, "accepts RS256, not ES256"},
		{"azure without an RS256 key", "{algorithm: ES256}", "azure", "", []string{"clients[0].profile"}, "configure one under signing.algorithm or signing.algorithms"},
		{"kubernetes with EdDSA only", "{algorithm: EdDSA}", "kubernetes", "", []string{"clients[0].profile"}, "RS256 or ES256"},
		{"aws two audiences", "{}", "aws", "    audiences: [a, b]\n", []string{"clients[0].audiences"}, "exactly one audience"},
		{"azure two audiences", "{algorithm: RS256}", "azure", "    audiences: [api://AzureADTokenExchange, b]\n", []string{"clients[0].audiences"}, "exactly one audience"},
		{"azure audience too long", "{algorithm: RS256}", "azure", "    audiences: [" + strings.Repeat("a", 601) + "]\n", []string{"clients[0].audiences[0]"}, "600 characters"},
		{"gcp audience not a resource name", "{}", "gcp", "    audiences: [https://sso.example.com]\n", []string{"clients[0].audiences[0]"}, "resource name"},
		{"gcp default audience is the client id", "{}", "gcp", "", []string{"clients[0].audiences[0]"}, "resource name"},
		{"gcp pool id too short", "{}", "gcp", "    audiences: [//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/fedbroker]\n", []string{"clients[0].audiences[0]"}, "resource name"},
		{"gcp resource name", "{}", "gcp", "    audiences: [" + gcpAudience + "]\n", nil, ""},
		{"gcp https resource name", "{}", "gcp", "    audiences: [https:" + gcpAudience + "]\n", nil, ""},
		{"aws one audience", "{}", "aws", "    audiences: [sts.amazonaws.com]\n", nil, ""},
		{"vault many audiences", "{}", "vault", "    audiences: [vault, other]\n", nil, ""},
		{"kubernetes many audiences", "{}", "kubernetes", "    audiences: [k8s, other]\n", nil, ""},
		{"vault EdDSA", "{algorithm: EdDSA}", "vault", "", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(profileConfig(t, tt.signing, tt.profile, tt.extra)), func(string) string { return "" })
			got := problemPaths(t, err)
			if !slices.Equal(got, tt.want) {
				t.Fatalf("problems at %v, want %v (%v)", got, tt.want, err)
			}
			if tt.wantMsg != "" && !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q does not say %q", err, tt.wantMsg)
			}
		})
	}
}

func TestProfileSubjectAndIssuerBounds(t *testing.T) {
	long := strings.Repeat("r", 128)
	yml := strings.Replace(profileConfig(t, "{}", "gcp", "    audiences: ["+gcpAudience+"]\n"), "id: robot", "id: "+long, 1)
	_, err := Parse([]byte(yml), func(string) string { return "" })
	if got := problemPaths(t, err); !slices.Equal(got, []string{"clients[0].id"}) {
		t.Fatalf("problems at %v, want clients[0].id (%v)", got, err)
	}
	if !strings.Contains(err.Error(), "at most 127 bytes, not 128") {
		t.Errorf("error %q does not give the bound", err)
	}

	yml = strings.Replace(profileConfig(t, "{algorithm: RS256}", "azure", ""), "https://sso.example.com", "https://sso.example.com/"+strings.Repeat("p", 600), 1)
	_, err = Parse([]byte(yml), func(string) string { return "" })
	if got := problemPaths(t, err); !slices.Equal(got, []string{"clients[0].profile"}) || !strings.Contains(err.Error(), "at most 600 characters") {
		t.Fatalf("problems at %v, want clients[0].profile about the issuer's length (%v)", got, err)
	}

	if msg := SubjectProblem(ProfileGCP, long); !strings.Contains(msg, "128 bytes") {
		t.Errorf("SubjectProblem(gcp, 128 bytes) = %q", msg)
	}
	for _, c := range []struct{ profile, sub string }{{ProfileGCP, long[:127]}, {ProfileAWS, long}, {"", long}} {
		if msg := SubjectProblem(c.profile, c.sub); msg != "" {
			t.Errorf("SubjectProblem(%q, %d bytes) = %q, want none", c.profile, len(c.sub), msg)
		}
	}
}

func TestProfileDefaults(t *testing.T) {
	tests := []struct {
		name, signing, profile, extra string
		alg                           string
		audiences                     []string
	}{
		{"azure picks RS256 from algorithms", "{algorithm: ES256, algorithms: [RS256]}", "azure", "", "RS256", []string{AzureTokenExchangeAudience}},
		{"azure keeps its audience", "{algorithm: RS256}", "azure", "    audiences: [api://custom]\n", "RS256", []string{"api://custom"}},
		{"aws prefers RS256 over the default", "{algorithm: ES256, algorithms: [RS256]}", "aws", "", "RS256", []string{"robot"}},
		{"aws takes ES256 without RS256 keys", "{algorithm: ES256}", "aws", "", "ES256", []string{"robot"}},
		{"vault prefers RS256, its default", "{algorithm: EdDSA, algorithms: [ES256, RS256]}", "vault", "", "RS256", []string{"robot"}},
		{"aws over EdDSA takes RS256", "{algorithm: EdDSA, algorithms: [RS256, ES256]}", "aws", "", "RS256", []string{"robot"}},
		{"kubernetes over EdDSA takes ES256", "{algorithm: EdDSA, algorithms: [ES256]}", "kubernetes", "", "ES256", []string{"robot"}},
		{"an explicit algorithm stays", "{algorithm: ES256, algorithms: [RS256]}", "gcp", "    id_token_signed_response_alg: RS256\n    audiences: [" + gcpAudience + "]\n", "RS256", []string{gcpAudience}},
		{"vault keeps EdDSA", "{algorithm: EdDSA}", "vault", "", "EdDSA", []string{"robot"}},
		{"no profile, no default", "{algorithm: ES256}", `""`, "", "", []string{"robot"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse([]byte(profileConfig(t, tt.signing, tt.profile, tt.extra)), func(string) string { return "" })
			if err != nil {
				t.Fatal(err)
			}
			cl := cfg.Clients[0]
			if cl.IDTokenSignedResponseAlg != tt.alg {
				t.Errorf("id_token_signed_response_alg = %q, want %q", cl.IDTokenSignedResponseAlg, tt.alg)
			}
			if !slices.Equal(cl.Audiences, tt.audiences) {
				t.Errorf("audiences = %v, want %v", cl.Audiences, tt.audiences)
			}
		})
	}
}

// TestProfileLifetimeCap caps an inherited lifetime at a platform's bound
// and refuses an explicit one at or over it, with a platform whose bound
// is below the broker's own 24h (no published bound is, today).
func TestProfileLifetimeCap(t *testing.T) {
	saved := Platforms["capped"]
	Platforms["capped"] = Platform{Name: "capped", Title: "Capped", Algorithms: []string{"ES256"}, MaxLifetime: time.Hour}
	t.Cleanup(func() {
		if saved.Name == "" {
			delete(Platforms, "capped")
		} else {
			Platforms["capped"] = saved
		}
	})
	cfg, err := Parse([]byte(profileConfig(t, "{}", "capped", "")+"tokens: {access_token: 2h, id_token: 30m}\n"), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if cl := cfg.Clients[0]; cl.AccessTokenLifetime != time.Hour-time.Second || cl.IDTokenLifetime != 0 {
		t.Errorf("lifetimes = %s, %s; want the access token capped below 1h and the ID token's inherited", cl.AccessTokenLifetime, cl.IDTokenLifetime)
	}
	_, err = Parse([]byte(profileConfig(t, "{}", "capped", "    access_token_lifetime: 1h\n")), func(string) string { return "" })
	if got := problemPaths(t, err); !slices.Equal(got, []string{"clients[0].access_token_lifetime"}) {
		t.Fatalf("problems at %v, want clients[0].access_token_lifetime (%v)", got, err)
	}
}

// TestPlatformsTable holds every platform to the shape its rules need: a
// title, at least one algorithm the broker signs with and nothing it
// cannot, and the published values the other checks rely on.
func TestPlatformsTable(t *testing.T) {
	if got := ProfileNames(); !slices.Equal(got, []string{"aws", "azure", "gcp", "kubernetes", "vault"}) {
		t.Fatalf("profiles = %v", got)
	}
	signable := map[string]bool{"ES256": true, "RS256": true, "EdDSA": true}
	for name, p := range Platforms {
		if p.Name != name || p.Title == "" || len(p.Algorithms) == 0 {
			t.Errorf("%s: %+v", name, p)
		}
		for _, a := range p.Algorithms {
			if !signable[a] {
				t.Errorf("%s lists %s, which the broker does not sign with", name, a)
			}
		}
	}
	if got := Platforms[ProfileAzure].Algorithms; !slices.Equal(got, []string{"RS256"}) {
		t.Errorf("azure algorithms = %v, want RS256 only", got)
	}
	if slices.Contains(Platforms[ProfileKubernetes].Algorithms, "EdDSA") || slices.Contains(Platforms[ProfileAWS].Algorithms, "EdDSA") || slices.Contains(Platforms[ProfileGCP].Algorithms, "EdDSA") {
		t.Error("a platform that does not take EdDSA lists it")
	}
}

func TestProfileDiff(t *testing.T) {
	base := profileConfig(t, "{algorithm: RS256}", "aws", "")
	old, err := Parse([]byte(base), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	next, err := Parse([]byte(strings.Replace(base, "profile: aws", "profile: vault", 1)), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	got := Diff(old, next)
	if !slices.Contains(got, Change{Path: "clients[robot].profile", Kind: ChangeChanged}) {
		t.Errorf("Diff = %v, want clients[robot].profile changed", got)
	}
	for _, c := range got {
		if c.Section() != "clients" {
			t.Errorf("change %s outside clients", c)
		}
	}
}
