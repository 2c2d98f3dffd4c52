package config

import (
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

func TestHashSecretForms(t *testing.T) {
	long := GenerateSecret()
	if len(long) != 43 {
		t.Fatalf("GenerateSecret length = %d, want 43", len(long))
	}
	if other := GenerateSecret(); other == long {
		t.Fatal("GenerateSecret returned the same secret twice")
	}
	h, err := HashSecret(long)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "sha256$") {
		t.Errorf("HashSecret(43 chars) = %q, want sha256$ form", h)
	}
	if err := ParseSecretHash(h); err != nil {
		t.Errorf("ParseSecretHash(%q) = %v", h, err)
	}
	if !VerifySecret(h, long) {
		t.Error("VerifySecret(hash, secret) = false")
	}
	for _, wrong := range []string{"", long[:42], long + "x", strings.ToUpper(long)} {
		if VerifySecret(h, wrong) {
			t.Errorf("VerifySecret(hash, %q) = true", wrong)
		}
	}
	h2, _ := HashSecret(long)
	if h2 == h {
		t.Error("two hashes of one secret are equal: no salt")
	}

	short := "short-human-secret"
	b, err := HashSecret(short)
	if err != nil {
		t.Fatal(err)
	}
	if cost, err := bcrypt.Cost([]byte(b)); err != nil || cost != SecretBcryptCost {
		t.Errorf("HashSecret(short) = %q: cost %d, %v; want bcrypt cost %d", b, cost, err, SecretBcryptCost)
	}
	if err := ParseSecretHash(b); err != nil {
		t.Errorf("ParseSecretHash(bcrypt) = %v", err)
	}
	if !VerifySecret(b, short) || VerifySecret(b, short+"!") {
		t.Error("VerifySecret on bcrypt form gave the wrong answer")
	}
	if _, err := HashSecret(""); err == nil {
		t.Error("HashSecret(\"\") succeeded")
	}
}

func TestMalformedSecretHashes(t *testing.T) {
	good, _ := HashSecret(strings.Repeat("k", 32))
	parts := strings.Split(good, "$")
	bc, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	bad := []string{
		"",
		"hunter2",
		"sha256$",
		"sha256$$",
		"sha256$" + parts[1],
		"sha256$" + parts[1] + "$",
		"sha256$" + parts[1] + "$" + parts[2] + "$extra",
		"sha256$" + parts[1][:20] + "$" + parts[2],       // salt too short
		"sha256$" + parts[1] + "$" + parts[2][:40],       // digest too short
		"sha256$" + parts[1] + "==$" + parts[2],          // padded
		"sha256$" + parts[1] + "$" + parts[2][:42] + "!", // not base64url
		"SHA256$" + parts[1] + "$" + parts[2],            // wrong prefix case
		"md5$" + parts[1] + "$" + parts[2],
		string(bc[:59]),
		string(bc) + "x",
		"$2a$99$" + string(bc[7:]), // cost out of range
		"$3a$10$" + string(bc[7:]),
	}
	for _, h := range bad {
		if err := ParseSecretHash(h); err == nil {
			t.Errorf("ParseSecretHash(%q) = nil, want error", h)
		}
		if VerifySecret(h, strings.Repeat("k", 32)) || VerifySecret(h, "pw") || VerifySecret(h, "") {
			t.Errorf("VerifySecret(%q, ...) = true for a malformed hash", h)
		}
	}
}
