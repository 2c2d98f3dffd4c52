package broker

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/mapping"
)

// linkHarness has three local connectors: "local" and "backup" may link
// with each other; "partner" is in a links group of its own. Each has an
// account for the same person (email case differs).
func linkHarness(t *testing.T) *harness {
	t.Helper()
	hashes, _ := hashOnce()
	conns := fmt.Sprintf(`
- id: local
  type: local
  mapping: linked
  config:
    users:
      - {username: alice, password_hash: %q, email: alice@acme.com}
      - {username: dave, password_hash: %q, email: dave@acme.com}
- id: backup
  type: local
  mapping: linked
  config:
    users:
      - {username: alice-b, password_hash: %q, email: ALICE@acme.com}
      - {username: dave-b, password_hash: %q, email: Dave@Acme.com}
      - {username: unverified, password_hash: %q, email: alice@acme.com, email_verified: false}
- id: partner
  type: local
  mapping: linked
  config:
    users:
      - {username: alice-p, password_hash: %q, email: alice@acme.com}
`, hashes[0], hashes[0], hashes[0], hashes[0], hashes[0], hashes[0])
	return newHarness(t, nil, nil, func(cfg *config.Config) {
		var cs []config.Connector
		if err := yaml.Unmarshal([]byte(conns), &cs); err != nil {
			t.Fatal(err)
		}
		cfg.Connectors = cs
		cfg.Mappings["linked"] = mapping.Spec{
			Claims: map[string]mapping.ClaimSpec{"email": {Expr: "claims.?email"}},
			Link:   `claims.email_verified == true ? string(claims.email).lowerAscii() : ""`,
		}
		cfg.Links.Groups = [][]string{{"local", "backup"}, {"partner"}}
	})
}

// loginAt signs user in at connector and returns the ID token's subject
// (or the error page's response).
func (h *harness) loginAt(connector, user string) (string, response) {
	h.t.Helper()
	br := h.newBrowser()
	p := newPKCE()
	params := authParams(p)
	params.Set("connector_id", connector)
	r := h.authorize(br, params)
	if r.location == nil {
		h.t.Fatalf("authorize = %d", r.status)
	}
	done := h.passwordLogin(br, r.location, user, alicePassword)
	if done.status != http.StatusSeeOther {
		return "", done
	}
	tr := h.redeem(done.location.Query().Get("code"), p)
	if tr.status != 200 {
		h.t.Fatalf("redeem = %d %s", tr.status, tr.Error)
	}
	raw, _ := b64(strings.Split(tr.IDToken, ".")[1])
	var c struct {
		Sub string `json:"sub"`
	}
	_ = jsonUnmarshal(raw, &c)
	return c.Sub, done
}

func TestLinking(t *testing.T) {
	h := linkHarness(t)
	a, _ := h.loginAt("local", "alice")
	b, _ := h.loginAt("backup", "alice-b")
	if a == "" || a != b {
		t.Fatalf("alice via local = %q, via backup = %q: want one linked subject", a, b)
	}
	again, _ := h.loginAt("local", "alice")
	if again != a {
		t.Errorf("second login via local = %q, want %q", again, a)
	}
	// An unverified email never links: a subject of its own.
	u, _ := h.loginAt("backup", "unverified")
	if u == "" || u == a {
		t.Errorf("unverified email got subject %q (linked subject %q): must not link", u, a)
	}
	// A connector outside the group with the same key is a conflict, never a
	// silent merge.
	sub, page := h.loginAt("partner", "alice-p")
	if sub != "" || page.status != http.StatusConflict || !strings.Contains(page.body, "cannot be merged") {
		t.Fatalf("partner login = %q %d, want a 409 conflict page; body %s", sub, page.status, page.body)
	}
	if !strings.Contains(h.audit.String(), "link conflict") {
		t.Error("no audit line for the link conflict")
	}
}

// TestConcurrentFirstLogins: the same person signing in for the first time
// through two linkable connectors at once ends with one subject.
func TestConcurrentFirstLogins(t *testing.T) {
	h := linkHarness(t)
	var wg sync.WaitGroup
	subs := make([]string, 2)
	for i, c := range []struct{ conn, user string }{{"local", "dave"}, {"backup", "dave-b"}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			subs[i], _ = h.loginAt(c.conn, c.user)
		}()
	}
	wg.Wait()
	if subs[0] == "" || subs[0] != subs[1] {
		t.Fatalf("concurrent first logins gave subjects %q and %q, want one", subs[0], subs[1])
	}
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
