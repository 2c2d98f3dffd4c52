package config

import (
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestRedirectURIPorts: a registered redirect URI whose port is not a TCP
// port (0, above 65535, empty, with leading zeros) is a problem at its
// YAML path, for every scheme that has ports and for post-logout redirects.
func TestRedirectURIPorts(t *testing.T) {
	const head = "issuer: https://sso.example.com\nclients:\n"
	for _, tc := range []struct {
		name string
		yml  string
		want []Problem
	}{
		{"ports 1 and 65535 ok", `  - {id: a, public: true, redirect_uris: ["http://127.0.0.1:1/cb", "http://[::1]:65535/cb", "https://a.example:8443/cb"]}`, nil},
		{"port 0", `  - {id: a, public: true, redirect_uris: ["http://127.0.0.1:8080/cb", "http://127.0.0.1:0/cb"]}`,
			[]Problem{{Path: "clients[0].redirect_uris[1]", Message: `port must be a number from 1 to 65535 without leading zeros, not "0"`}}},
		{"port 65536", `  - {id: a, public: true, redirect_uris: ["http://localhost:65536/cb"]}`,
			[]Problem{{Path: "clients[0].redirect_uris[0]", Message: `port must be a number from 1 to 65535 without leading zeros, not "65536"`}}},
		{"port 99999 https", `  - {id: a, public: true, redirect_uris: ["https://a.example:99999/cb"]}`,
			[]Problem{{Path: "clients[0].redirect_uris[0]", Message: `port must be a number from 1 to 65535 without leading zeros, not "99999"`}}},
		{"empty port", `  - {id: a, public: true, redirect_uris: ["http://127.0.0.1:/cb"]}`,
			[]Problem{{Path: "clients[0].redirect_uris[0]", Message: "empty port: remove the colon or give a port from 1 to 65535"}}},
		{"empty port ipv6", `  - {id: a, public: true, redirect_uris: ["http://[::1]:/cb"]}`,
			[]Problem{{Path: "clients[0].redirect_uris[0]", Message: "empty port: remove the colon or give a port from 1 to 65535"}}},
		{"leading zero", `  - {id: a, public: true, redirect_uris: ["http://127.0.0.1:08080/cb"]}`,
			[]Problem{{Path: "clients[0].redirect_uris[0]", Message: `port must be a number from 1 to 65535 without leading zeros, not "08080"`}}},
		{"post-logout port", `  - {id: a, public: true, redirect_uris: ["http://127.0.0.1/cb"], post_logout_redirect_uris: ["https://a.example:70000/"]}`,
			[]Problem{{Path: "clients[0].post_logout_redirect_uris[0]", Message: `port must be a number from 1 to 65535 without leading zeros, not "70000"`}}},
		{"second client", "  - {id: a, public: true, redirect_uris: [\"http://127.0.0.1/cb\"]}\n" +
			`  - {id: b, public: true, redirect_uris: ["https://b.example/cb", "http://127.0.0.1:65536/cb"]}`,
			[]Problem{{Path: "clients[1].redirect_uris[1]", Message: `port must be a number from 1 to 65535 without leading zeros, not "65536"`}}},
		// A URI already refused for another reason is reported once.
		{"http elsewhere with bad port", `  - {id: a, public: true, redirect_uris: ["http://evil.example:0/cb"]}`,
			[]Problem{{Path: "clients[0].redirect_uris[0]", Message: "http is only allowed for localhost and loopback addresses; use https"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(head+tc.yml+"\n"), noEnv)
			var got []Problem
			if err != nil {
				es, ok := err.(Errors)
				if !ok {
					t.Fatalf("Parse error %v (%T) is not Errors", err, err)
				}
				got = es
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
		})
	}
}

// TestNotesConfidentialLoopback: a confidential client may register a
// loopback redirect, but it matches exactly, port included (the any-port
// rule of RFC 8252 §7.3 is for public native clients). The configuration
// is valid; Notes says so at the redirect's YAML path.
func TestNotesConfidentialLoopback(t *testing.T) {
	yml := `issuer: https://sso.example.com
clients:
  - id: native
    public: true
    redirect_uris: ["http://127.0.0.1/cb"]
  - id: web
    secret_hash: "SECRETHASH"
    redirect_uris: ["https://web.example/cb", "http://127.0.0.1:8080/cb", "http://localhost/cb"]
    post_logout_redirect_uris: ["http://127.0.0.1:8080/"]
`
	cfg, err := Parse(fill(yml), noEnv)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	const msg = "a confidential client's loopback redirect must match exactly, port included; only public (native) clients may use any port on loopback (RFC 8252 §7.3)"
	want := []Problem{
		{Path: "clients[1].redirect_uris[1]", Message: msg},
		{Path: "clients[1].redirect_uris[2]", Message: msg},
	}
	if diff := cmp.Diff(want, cfg.Notes()); diff != "" {
		t.Errorf("Notes (-want +got):\n%s", diff)
	}
	for _, p := range cfg.Notes() {
		if !strings.Contains(p.Error(), "port included") {
			t.Errorf("note %q does not say the port must match", p.Error())
		}
	}
}

func TestValidURLPort(t *testing.T) {
	for raw, want := range map[string]bool{
		"http://127.0.0.1/cb":                    true,
		"http://127.0.0.1:1/cb":                  true,
		"http://127.0.0.1:65535/cb":              true,
		"http://[::1]:8080/cb":                   true,
		"http://[::1]/cb":                        true,
		"com.example.app:/cb":                    true,
		"http://127.0.0.1:0/cb":                  false,
		"http://127.0.0.1:65536/cb":              false,
		"http://127.0.0.1:99999/cb":              false,
		"http://127.0.0.1:/cb":                   false,
		"http://[::1]:/cb":                       false,
		"http://127.0.0.1:080/cb":                false,
		"http://127.0.0.1:18446744073709551617/": false,
	} {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatalf("url.Parse(%q): %v", raw, err)
		}
		if got := ValidURLPort(u); got != want {
			t.Errorf("ValidURLPort(%q) = %v, want %v", raw, got, want)
		}
	}
}
