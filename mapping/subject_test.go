package mapping

import (
	"strings"
	"testing"
)

// TestDefaultSubjectStable pins DefaultSubject's output: every issued
// subject and identity link depends on it, so it must never change.
func TestDefaultSubjectStable(t *testing.T) {
	for _, tc := range []struct{ connector, upstream, want string }{
		{"google", "1234", "Os4G1iYY4Tfb2VjBS8YjfRAzlkaPHYhDc_PkQWJdFoE"},
		{"", "", "OqpL95Ufpc3ac4Xq3kvXlpupPqH9StgwCb5oPNmSHjI"},
		{"ab", "c", "Ec4CFapAp-f5FBFhqMwEolYs8WNmryz5fckdCCk2POU"},
		{"local", strings.Repeat("é", 300), "BIe1EzUuFgbG23RDjhfvZt2kRykDByj7fWx8i4HblNI"},
	} {
		if got := DefaultSubject(tc.connector, tc.upstream); got != tc.want {
			t.Errorf("DefaultSubject(%q, %.10q) = %s, want %s", tc.connector, tc.upstream, got, tc.want)
		}
	}
}
