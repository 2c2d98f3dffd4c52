package storage

import "testing"

func TestHash(t *testing.T) {
	tests := []struct{ in, want string }{
		// base64url(SHA-256) without padding, from FIPS 180-2 test vectors.
		{"abc", "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0"},
		{"", "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"},
	}
	for _, tc := range tests {
		if got := Hash(tc.in); got != tc.want {
			t.Errorf("Hash(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if Hash("a") == Hash("b") {
		t.Errorf("Hash(a) == Hash(b)")
	}
}
