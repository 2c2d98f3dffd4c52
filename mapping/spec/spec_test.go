package spec

import (
	"testing"

	"go.yaml.in/yaml/v3"
)

func TestClaimSpecYAML(t *testing.T) {
	tests := []struct {
		name    string
		src     string
		want    ClaimSpec
		wantErr bool
	}{
		{"short form", "claims.email", ClaimSpec{Expr: "claims.email"}, false},
		{"full form", "{expr: claims.groups, in: access_token}", ClaimSpec{Expr: "claims.groups", In: "access_token"}, false},
		{"list", "[1, 2]", ClaimSpec{}, true},
		{"full form with a list expr", "{expr: [a]}", ClaimSpec{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got ClaimSpec
			err := yaml.Unmarshal([]byte(tt.src), &got)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Unmarshal(%q) error = %v, wantErr %v", tt.src, err, tt.wantErr)
			}
			if !tt.wantErr && got != tt.want {
				t.Errorf("Unmarshal(%q) = %+v, want %+v", tt.src, got, tt.want)
			}
		})
	}
}
