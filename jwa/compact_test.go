package jwa

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

var benchToken = strings.Repeat("A", 40) + "." + base64.RawURLEncoding.EncodeToString([]byte(strings.Repeat("x", 600))) + "." + base64.RawURLEncoding.EncodeToString(make([]byte, 64))

func BenchmarkCheckCompact(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if err := CheckCompact(benchToken); err != nil {
			b.Fatal(err)
		}
	}
}

// canonicalRef is CheckCompact's definition, written the slow way: every
// segment is the encoding of exactly the bytes it decodes to.
func canonicalRef(token string) bool {
	segs := strings.Split(token, ".")
	if len(segs) != 3 {
		return false
	}
	for _, seg := range segs {
		b, err := base64.RawURLEncoding.DecodeString(seg)
		if err != nil || base64.RawURLEncoding.EncodeToString(b) != seg {
			return false
		}
	}
	return true
}

// FuzzCheckCompact: CheckCompact refuses exactly the tokens that are not
// three segments of canonical base64url.
func FuzzCheckCompact(f *testing.F) {
	for _, s := range []string{benchToken, "e30.QUJD.QQ", "e30..QUI", "e30.QR.QQ", "e30.Q\nQ.QQ", "e30.QQ==.QQ", "e30.Q.QQ", "a.b.c.d", "e30.QQ+/.QQ", "e30.QQ.Q\r"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, token string) {
		err := CheckCompact(token)
		if want := canonicalRef(token); (err == nil) != want {
			t.Fatalf("CheckCompact(%q) = %v, want canonical %v", token, err, want)
		}
		if err != nil && !errors.Is(err, ErrEncoding) {
			t.Fatalf("CheckCompact(%q) = %v, want ErrEncoding", token, err)
		}
	})
}
