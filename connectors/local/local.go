// Package local is the break-glass password connector: a short list of
// users with bcrypt password hashes kept in the broker's own configuration,
// for when every upstream identity provider is unreachable.
//
// The connector does no rate limiting of its own; the broker limits failed
// attempts before calling Login.
package local

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/mail"
	"strings"

	"golang.org/x/crypto/bcrypt"

	"github.com/fedbroker/fedbroker/connectors"
	"github.com/fedbroker/fedbroker/problem"
)

// Config is the `config:` block of a connector with `type: local`.
type Config struct {
	Users []User `yaml:"users"`
}

// User is one local account.
type User struct {
	Username string `yaml:"username"`
	// PasswordHash is a bcrypt hash ($2a$, $2b$ or $2y$).
	PasswordHash string `yaml:"password_hash"`
	Email        string `yaml:"email"`
	// EmailVerified defaults to true: the administrator wrote the address.
	EmailVerified *bool    `yaml:"email_verified"`
	Name          string   `yaml:"name"`
	Groups        []string `yaml:"groups"`
	// Subject is the stable upstream subject; default: the username as
	// written. Set it before renaming a user to keep links and tokens.
	Subject string `yaml:"subject"`
}

var (
	_ connectors.Config            = (*Config)(nil)
	_ connectors.PasswordConnector = (*Connector)(nil)
)

// Validate reports empty or duplicate usernames (compared
// case-insensitively), hashes that are not bcrypt, malformed emails and
// duplicate subjects.
func (c *Config) Validate() []problem.Problem {
	var errs []problem.Problem
	add := func(path, format string, args ...any) {
		errs = append(errs, problem.Problem{Path: path, Message: fmt.Sprintf(format, args...)})
	}
	if len(c.Users) == 0 {
		add("users", "at least one user is required")
	}
	names := make(map[string]int)
	subjects := make(map[string]int)
	for i, u := range c.Users {
		p := fmt.Sprintf("users[%d]", i)
		key := strings.ToLower(u.Username)
		switch {
		case strings.TrimSpace(u.Username) == "":
			add(p+".username", "required")
		case u.Username != strings.TrimSpace(u.Username):
			add(p+".username", "must not start or end with spaces")
		default:
			if first, dup := names[key]; dup {
				add(p+".username", "duplicate of users[%d].username (usernames are case-insensitive)", first)
			} else {
				names[key] = i
			}
		}
		if u.PasswordHash == "" {
			add(p+".password_hash", "required (a bcrypt hash, e.g. from fedbroker hash-secret --password)")
		} else if _, err := bcrypt.Cost([]byte(u.PasswordHash)); err != nil || len(u.PasswordHash) != 60 {
			add(p+".password_hash", "not a bcrypt hash")
		}
		if u.Email != "" && !validEmail(u.Email) {
			add(p+".email", "not an email address: %q", u.Email)
		}
		sub := u.subject()
		if sub != "" {
			if first, dup := subjects[sub]; dup {
				add(p+".subject", "same subject %q as users[%d]", sub, first)
			} else {
				subjects[sub] = i
			}
		}
	}
	return errs
}

// validEmail accepts a bare addr-spec with a dotted domain: no display
// name, no angle brackets.
func validEmail(s string) bool {
	a, err := mail.ParseAddress(s)
	if err != nil || a.Address != s || a.Name != "" {
		return false
	}
	at := strings.LastIndexByte(s, '@')
	domain := s[at+1:]
	return at > 0 && strings.Contains(domain, ".") && !strings.HasPrefix(domain, ".") && !strings.HasSuffix(domain, ".")
}

func (u User) subject() string {
	if u.Subject != "" {
		return u.Subject
	}
	return u.Username
}

// Open returns a *Connector. It does not validate; the broker calls
// Validate first. It computes one bcrypt hash, at the highest cost among
// the configured users, to compare unknown usernames against.
func (c *Config) Open(_ context.Context, id string, _ connectors.Options) (connectors.Connector, error) {
	conn := &Connector{id: id, users: make(map[string]User, len(c.Users))}
	cost := bcrypt.MinCost
	for _, u := range c.Users {
		conn.users[strings.ToLower(u.Username)] = u
		if uc, err := bcrypt.Cost([]byte(u.PasswordHash)); err == nil && uc > cost {
			cost = uc
		}
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return nil, fmt.Errorf("local: %w", err)
	}
	dummy, err := bcrypt.GenerateFromPassword(secret[:], cost)
	if err != nil {
		return nil, fmt.Errorf("local: %w", err)
	}
	conn.dummyHash = dummy
	return conn, nil
}

// Connector checks usernames and passwords against the configured list.
// It is safe for concurrent use.
type Connector struct {
	id    string
	users map[string]User // by lower-cased username
	// dummyHash is compared against for unknown usernames, so that the
	// time a failed login takes does not tell which usernames exist.
	dummyHash []byte
}

// Prompt labels the username field.
func (c *Connector) Prompt() string { return "Username" }

// maxBcryptPassword is the longest password bcrypt reads in full.
const maxBcryptPassword = 72

// Login checks username (case-insensitively) and password. It returns
// ok=false with a nil error for an unknown user or a wrong password, and
// runs one bcrypt comparison either way.
func (c *Connector) Login(_ context.Context, _ connectors.Scopes, username, password string) (connectors.Identity, bool, error) {
	u, found := c.users[strings.ToLower(username)]
	hash := c.dummyHash
	// bcrypt reads only the first 72 bytes: a longer password would match
	// on its prefix alone, so it never matches (after the same one
	// comparison, against the dummy hash).
	if found && len(password) <= maxBcryptPassword {
		hash = []byte(u.PasswordHash)
	} else {
		found = false
	}
	match := bcrypt.CompareHashAndPassword(hash, []byte(password)) == nil
	if !found || !match {
		return connectors.Identity{}, false, nil
	}
	return u.identity(), true, nil
}

// identity builds the Identity with JSON-shaped claims.
func (u User) identity() connectors.Identity {
	verified := true
	if u.EmailVerified != nil {
		verified = *u.EmailVerified
	}
	groups := make([]any, len(u.Groups))
	for i, g := range u.Groups {
		groups[i] = g
	}
	sub := u.subject()
	return connectors.Identity{
		Subject: sub,
		Claims: map[string]any{
			"sub":            sub,
			"username":       u.Username,
			"email":          u.Email,
			"email_verified": verified,
			"name":           u.Name,
			"groups":         groups,
		},
	}
}
