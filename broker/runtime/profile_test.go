package runtime

import (
	"context"
	"strings"
	"testing"

	"github.com/fedbroker/fedbroker/broker/config"
)

// TestCompileClientChecksProfileAlgorithm: a client whose configuration was
// built in code (no SetDefaults, no Validate) still never signs with an
// algorithm its platform profile refuses.
func TestCompileClientChecksProfileAlgorithm(t *testing.T) {
	deps := Deps{Algorithms: []string{"ES256", "RS256"}}
	for _, tc := range []struct {
		name, profile, alg string
		wantProblem        bool
	}{
		{"azure with the fleet default ES256", config.ProfileAzure, "", true},
		{"azure with ES256", config.ProfileAzure, "ES256", true},
		{"azure with RS256", config.ProfileAzure, "RS256", false},
		{"gcp with ES256", config.ProfileGCP, "ES256", false},
		{"no profile with ES256", "", "ES256", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cc := config.Client{ID: "c", Profile: tc.profile, IDTokenSignedResponseAlg: tc.alg}
			_, ps := compileClient(context.Background(), cc, config.Tokens{}, deps)
			var got []string
			for _, p := range ps {
				if p.Path == "id_token_signed_response_alg" {
					got = append(got, p.Message)
				}
			}
			if tc.wantProblem != (len(got) == 1) {
				t.Fatalf("problems at id_token_signed_response_alg = %q, want a problem: %v", got, tc.wantProblem)
			}
			if tc.wantProblem && !strings.Contains(got[0], "RS256") {
				t.Errorf("problem %q does not name what the platform accepts", got[0])
			}
		})
	}
}
