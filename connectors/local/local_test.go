package local

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/bcrypt"

	"github.com/fedbroker/fedbroker/connectors"
)

var hashes = sync.OnceValue(func() map[string]string {
	out := make(map[string]string)
	for _, pw := range []string{"alice-pw", "bob-pw"} {
		h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
		if err != nil {
			panic(err)
		}
		out[pw] = string(h)
	}
	return out
})

func testConfig() *Config {
	no := false
	return &Config{Users: []User{
		{Username: "Alice", PasswordHash: hashes()["alice-pw"], Email: "alice@example.com", Name: "Alice A", Groups: []string{"admins", "eng"}},
		{Username: "bob", PasswordHash: hashes()["bob-pw"], Email: "bob@example.com", EmailVerified: &no, Subject: "u-0002"},
	}}
}

func open(t *testing.T, c *Config) *Connector {
	t.Helper()
	if errs := c.Validate(); len(errs) > 0 {
		t.Fatalf("Validate: %v", errs)
	}
	impl, err := c.Open(context.Background(), "local", connectors.Options{})
	if err != nil {
		t.Fatal(err)
	}
	conn, ok := impl.(*Connector)
	if !ok {
		t.Fatalf("Open returned %T, want *Connector", impl)
	}
	return conn
}

func TestLogin(t *testing.T) {
	conn := open(t, testConfig())
	tests := []struct {
		name, user, pass string
		wantOK           bool
		wantSub          string
	}{
		{"right password", "Alice", "alice-pw", true, "Alice"},
		{"username case-insensitive", "aLiCe", "alice-pw", true, "Alice"},
		{"explicit subject", "BOB", "bob-pw", true, "u-0002"},
		{"wrong password", "Alice", "alice-PW", false, ""},
		{"other user's password", "bob", "alice-pw", false, ""},
		{"empty password", "bob", "", false, ""},
		{"unknown user", "mallory", "alice-pw", false, ""},
		{"empty user", "", "", false, ""},
		{"username with space", " alice", "alice-pw", false, ""},
		{"password too long", "bob", strings.Repeat("b", 100), false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, ok, err := conn.Login(context.Background(), connectors.Scopes{}, tt.user, tt.pass)
			if err != nil {
				t.Fatalf("Login err = %v", err)
			}
			if ok != tt.wantOK {
				t.Fatalf("Login(%q, %q) ok = %v, want %v", tt.user, tt.pass, ok, tt.wantOK)
			}
			if id.Subject != tt.wantSub {
				t.Errorf("Login(%q) subject = %q, want %q", tt.user, id.Subject, tt.wantSub)
			}
			if !ok && id.Claims != nil {
				t.Errorf("failed login returned claims %v", id.Claims)
			}
		})
	}
}

func TestClaimsShape(t *testing.T) {
	conn := open(t, testConfig())
	id, ok, _ := conn.Login(context.Background(), connectors.Scopes{Groups: true}, "alice", "alice-pw")
	if !ok {
		t.Fatal("login failed")
	}
	want := map[string]any{
		"sub": "Alice", "username": "Alice", "email": "alice@example.com", "email_verified": true,
		"name": "Alice A", "groups": []any{"admins", "eng"},
	}
	if diff := cmp.Diff(want, id.Claims); diff != "" {
		t.Errorf("alice claims (-want +got):\n%s", diff)
	}
	id, _, _ = conn.Login(context.Background(), connectors.Scopes{}, "bob", "bob-pw")
	want = map[string]any{
		"sub": "u-0002", "username": "bob", "email": "bob@example.com", "email_verified": false,
		"name": "", "groups": []any{},
	}
	if diff := cmp.Diff(want, id.Claims); diff != "" {
		t.Errorf("bob claims (-want +got):\n%s", diff)
	}
	if conn.Prompt() == "" {
		t.Error("Prompt is empty")
	}
}

// TestUnknownUserRunsBcrypt checks that an unknown user is compared against
// a real bcrypt hash at the configured cost, so that it costs as much as a
// wrong password.
func TestUnknownUserRunsBcrypt(t *testing.T) {
	h, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost+2)
	if err != nil {
		t.Fatal(err)
	}
	conn := open(t, &Config{Users: []User{
		{Username: "a", PasswordHash: hashes()["alice-pw"]},
		{Username: "b", PasswordHash: string(h)},
	}})
	cost, err := bcrypt.Cost(conn.dummyHash)
	if err != nil || cost != bcrypt.MinCost+2 {
		t.Errorf("dummy hash cost = %d, %v; want the highest configured cost %d", cost, err, bcrypt.MinCost+2)
	}
}

func TestValidate(t *testing.T) {
	good := hashes()["alice-pw"]
	tests := []struct {
		name  string
		users []User
		want  []string
	}{
		{"no users", nil, []string{"users"}},
		{"ok", []User{{Username: "a", PasswordHash: good, Email: "a@example.com"}}, nil},
		{"empty username", []User{{Username: " ", PasswordHash: good}}, []string{"users[0].username"}},
		{"padded username", []User{{Username: "a ", PasswordHash: good}}, []string{"users[0].username"}},
		{"duplicate by case", []User{{Username: "a", PasswordHash: good}, {Username: "A", PasswordHash: good}}, []string{"users[1].username"}},
		{"duplicate subject", []User{{Username: "a", PasswordHash: good, Subject: "s"}, {Username: "b", PasswordHash: good, Subject: "s"}}, []string{"users[1].subject"}},
		{"missing hash", []User{{Username: "a"}}, []string{"users[0].password_hash"}},
		{"clear password", []User{{Username: "a", PasswordHash: "hunter2"}}, []string{"users[0].password_hash"}},
		{"truncated hash", []User{{Username: "a", PasswordHash: good[:50]}}, []string{"users[0].password_hash"}},
		{"sha256 secret hash", []User{{Username: "a", PasswordHash: "sha256$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}}, []string{"users[0].password_hash"}},
		{"bad emails", []User{
			{Username: "a", PasswordHash: good, Email: "not-an-email"},
			{Username: "b", PasswordHash: good, Email: "Bob <bob@example.com>"},
			{Username: "c", PasswordHash: good, Email: "c@localhost"},
			{Username: "d", PasswordHash: good, Email: "d@example.com."},
		}, []string{"users[0].email", "users[1].email", "users[2].email", "users[3].email"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, e := range (&Config{Users: tt.users}).Validate() {
				got = append(got, e.Path)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Validate paths (-want +got):\n%s", diff)
			}
		})
	}
}

// TestLoginBeyondBcryptLimit: bcrypt reads only the first 72 bytes of a
// password, so a longer one would match on its prefix alone. A password
// over 72 bytes never signs in.
func TestLoginBeyondBcryptLimit(t *testing.T) {
	pw := strings.Repeat("p", 72)
	hash, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	conn := open(t, &Config{Users: []User{{Username: "long", PasswordHash: string(hash), Email: "long@example.com"}}})
	if _, ok, err := conn.Login(context.Background(), connectors.Scopes{}, "long", pw); err != nil || !ok {
		t.Fatalf("Login with the 72-byte password = %v, %v; want ok", ok, err)
	}
	for _, extra := range []string{"x", strings.Repeat("y", 100)} {
		if _, ok, err := conn.Login(context.Background(), connectors.Scopes{}, "long", pw+extra); err != nil || ok {
			t.Errorf("Login with the password plus %d bytes = %v, %v; want refused", len(extra), ok, err)
		}
	}
}
