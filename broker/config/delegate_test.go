package config

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestDelegateAnyAudience: the delegation opt-out is accepted on a
// confidential client with the token-exchange grant, and refused where it
// would mean nothing.
func TestDelegateAnyAudience(t *testing.T) {
	const iss = "issuer: https://sso.example.com\n"
	tests := []struct {
		name string
		yml  string
		want []string
	}{
		{"with the grant", iss + "clients:\n  - {id: a, secret_hash: SECRETHASH, grant_types: [" + GrantTokenExchange + "], delegate_any_audience: true}\n", nil},
		{"without the grant", iss + "clients:\n  - {id: a, secret_hash: SECRETHASH, grant_types: [client_credentials], delegate_any_audience: true}\n", []string{"clients[0].delegate_any_audience"}},
		{"default grants", iss + "clients:\n  - {id: a, secret_hash: SECRETHASH, redirect_uris: [https://a.example.com/cb], delegate_any_audience: true}\n", []string{"clients[0].delegate_any_audience"}},
		{"public client", iss + "clients:\n  - {id: a, public: true, redirect_uris: [https://a.example.com/cb], grant_types: [authorization_code, " + GrantTokenExchange + "], delegate_any_audience: true}\n", []string{"clients[0].delegate_any_audience"}},
		{"not a bool", iss + "clients:\n  - {id: a, secret_hash: SECRETHASH, grant_types: [" + GrantTokenExchange + "], delegate_any_audience: maybe}\n", []string{"clients[0].delegate_any_audience"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse(fill(tt.yml), noEnv)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Parse = %v, want no error", err)
				}
				if !cfg.Clients[0].DelegateAnyAudience {
					t.Error("delegate_any_audience: true did not decode")
				}
				return
			}
			if diff := cmp.Diff(tt.want, paths(t, err)); diff != "" {
				t.Errorf("problem paths (-want +got):\n%s\nerror:\n%v", diff, err)
			}
		})
	}
}
