package config

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// Client secret hashes come in two forms:
//
//	sha256$<base64url 16-byte salt>$<base64url SHA-256(salt || secret)>
//	$2a$12$...   (bcrypt)
//
// The fast salted SHA-256 form is only chosen for high-entropy secrets (at
// least MinFastSecretLen characters, as GenerateSecret produces), where a
// slow hash buys nothing and would cost CPU on every token request. Shorter,
// possibly human-chosen secrets get bcrypt.
const (
	// MinFastSecretLen is the secret length from which HashSecret uses the
	// salted SHA-256 form.
	MinFastSecretLen = 32
	// SecretBcryptCost is the bcrypt cost HashSecret uses for short secrets.
	SecretBcryptCost = 12

	sha256Prefix = "sha256$"
	saltLen      = 16
)

// HashSecret returns the hash to put in a client's secret_hash. Secrets of
// MinFastSecretLen characters or more get the salted SHA-256 form; shorter
// ones bcrypt at SecretBcryptCost. Secrets longer than 72 bytes always take
// the SHA-256 form, so nothing is silently truncated.
func HashSecret(secret string) (string, error) {
	if secret == "" {
		return "", errors.New("config: hash secret: empty secret")
	}
	if len(secret) < MinFastSecretLen {
		h, err := bcrypt.GenerateFromPassword([]byte(secret), SecretBcryptCost)
		if err != nil {
			return "", fmt.Errorf("config: hash secret: %w", err)
		}
		return string(h), nil
	}
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("config: hash secret: %w", err)
	}
	return sha256Prefix + base64.RawURLEncoding.EncodeToString(salt) + "$" +
		base64.RawURLEncoding.EncodeToString(saltedSum(salt, secret)), nil
}

// GenerateSecret returns a new client secret: 32 random bytes, base64url
// without padding (43 characters).
func GenerateSecret() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("config: generate secret: %v", err)) // crypto/rand never fails on supported platforms
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// VerifySecret reports whether secret matches hash. The SHA-256 form is
// compared in constant time; bcrypt hashes are checked with
// bcrypt.CompareHashAndPassword. A malformed hash never matches.
func VerifySecret(hash, secret string) bool {
	if strings.HasPrefix(hash, sha256Prefix) {
		salt, sum, err := parseSHA256(hash)
		if err != nil {
			return false
		}
		return subtle.ConstantTimeCompare(sum, saltedSum(salt, secret)) == 1
	}
	if err := parseBcrypt(hash); err != nil {
		return false
	}
	return bcrypt.CompareHashAndPassword([]byte(hash), []byte(secret)) == nil
}

// ParseSecretHash returns an error unless hash is a well-formed secret hash
// in one of the two forms.
func ParseSecretHash(hash string) error {
	if strings.HasPrefix(hash, sha256Prefix) {
		_, _, err := parseSHA256(hash)
		return err
	}
	if strings.HasPrefix(hash, "$2") {
		return parseBcrypt(hash)
	}
	return errors.New("config: secret hash: not a sha256$ or bcrypt hash (use `fedbroker hash-secret`)")
}

func parseSHA256(hash string) (salt, sum []byte, err error) {
	parts := strings.Split(strings.TrimPrefix(hash, sha256Prefix), "$")
	if len(parts) != 2 {
		return nil, nil, errors.New("config: secret hash: want sha256$<salt>$<digest>")
	}
	salt, err = base64.RawURLEncoding.Strict().DecodeString(parts[0])
	if err != nil || len(salt) != saltLen {
		return nil, nil, fmt.Errorf("config: secret hash: salt must be %d bytes of unpadded base64url", saltLen)
	}
	sum, err = base64.RawURLEncoding.Strict().DecodeString(parts[1])
	if err != nil || len(sum) != sha256.Size {
		return nil, nil, fmt.Errorf("config: secret hash: digest must be %d bytes of unpadded base64url", sha256.Size)
	}
	return salt, sum, nil
}

func parseBcrypt(hash string) error {
	// bcrypt.Cost checks the version prefix, the cost and the length.
	if _, err := bcrypt.Cost([]byte(hash)); err != nil {
		return fmt.Errorf("config: secret hash: bcrypt: %w", err)
	}
	if len(hash) != 60 {
		return errors.New("config: secret hash: bcrypt: want 60 characters")
	}
	return nil
}

func saltedSum(salt []byte, secret string) []byte {
	h := sha256.New()
	h.Write(salt)
	h.Write([]byte(secret))
	return h.Sum(nil)
}
