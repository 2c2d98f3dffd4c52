package runtime

import (
	"testing"

	"github.com/fedbroker/fedbroker/broker/config"
)

// TestMatchRedirectLoopbackPublicOnly: the any-port rule for loopback
// redirects (RFC 8252 §7.3) is for native apps, which are public clients.
// A confidential client's loopback redirect matches exactly, port included.
func TestMatchRedirectLoopbackPublicOnly(t *testing.T) {
	registered := []string{"http://127.0.0.1:9999/cb", "http://localhost/cb", "http://[::1]:8080/cb"}
	public := &Client{Client: config.Client{ID: "native", Public: true}, redirects: toSet(registered)}
	confidential := &Client{Client: config.Client{ID: "web"}, redirects: toSet(registered)}
	for _, tt := range []struct {
		uri                  string
		public, confidential bool
	}{
		{"http://127.0.0.1:9999/cb", true, true},
		{"http://localhost/cb", true, true},
		{"http://[::1]:8080/cb", true, true},
		{"http://127.0.0.1:41234/cb", true, false},
		{"http://127.0.0.1/cb", true, false}, // port 80 is a port too
		{"http://localhost:5000/cb", true, false},
		{"http://[::1]:1/cb", true, false},
		{"http://[::1]:65535/cb", true, false},
	} {
		if got := public.MatchRedirect(tt.uri); got != tt.public {
			t.Errorf("public client: MatchRedirect(%q) = %v, want %v", tt.uri, got, tt.public)
		}
		if got := confidential.MatchRedirect(tt.uri); got != tt.confidential {
			t.Errorf("confidential client: MatchRedirect(%q) = %v, want %v", tt.uri, got, tt.confidential)
		}
	}
}

// TestMatchRedirectPortRange: a presented redirect_uri whose port is not a
// TCP port (0, above 65535, empty, absurdly long) never matches, for any
// client, not even on a registered loopback host.
func TestMatchRedirectPortRange(t *testing.T) {
	registered := []string{"http://127.0.0.1:9999/cb", "http://localhost/cb", "http://[::1]/cb", "https://app.example/cb"}
	for _, public := range []bool{true, false} {
		cl := &Client{Client: config.Client{ID: "c", Public: public}, redirects: toSet(registered)}
		for _, uri := range []string{
			"http://127.0.0.1:0/cb",
			"http://127.0.0.1:65536/cb",
			"http://127.0.0.1:99999/cb",
			"http://127.0.0.1:/cb",
			"http://127.0.0.1:000000000000000000000000009999/cb",
			"http://127.0.0.1:18446744073709551617/cb",
			"http://localhost:0/cb",
			"http://localhost:/cb",
			"http://[::1]:0/cb",
			"http://[::1]:/cb",
			"http://[::1]:70000/cb",
			"https://app.example:0/cb",
			"https://app.example:/cb",
		} {
			if cl.MatchRedirect(uri) {
				t.Errorf("public=%v: MatchRedirect(%q) = true, want false (port out of 1-65535)", public, uri)
			}
		}
	}
}

// TestMatchRedirectPortRangeExact: even a client built without validation
// whose registered URI carries a bad port does not match it.
func TestMatchRedirectPortRangeExact(t *testing.T) {
	for _, uri := range []string{"http://127.0.0.1:0/cb", "http://127.0.0.1:65536/cb", "http://127.0.0.1:/cb"} {
		cl := &Client{Client: config.Client{ID: "c", Public: true}, redirects: toSet([]string{uri})}
		if cl.MatchRedirect(uri) {
			t.Errorf("MatchRedirect(%q) = true against itself, want false", uri)
		}
	}
}
