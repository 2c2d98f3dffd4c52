package broker

import (
	"bufio"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/mapping"
)

// yamlNode parses src into the node a connector's config block holds.
func yamlNode(t testing.TB, src string) yaml.Node {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
		t.Fatalf("yaml: %v\n%s", err, src)
	}
	if len(doc.Content) != 1 {
		t.Fatalf("yaml: want one document, got %d", len(doc.Content))
	}
	return *doc.Content[0]
}

// upstream is one connector added to the harness configuration.
type upstream struct {
	id, typ, name string
	config        string // YAML of the config block
	domains       []string
	mapping       string // name under mappings
}

// withUpstreams appends connectors (after the harness's local ones) and
// mappings to the configuration.
func withUpstreams(t testing.TB, ups []upstream, mappings map[string]mapping.Spec) func(*config.Config) {
	return func(cfg *config.Config) {
		for _, u := range ups {
			cfg.Connectors = append(cfg.Connectors, config.Connector{
				ID: u.id, Type: u.typ, Name: u.name, Mapping: u.mapping,
				Config: yamlNode(t, u.config), Domains: u.domains,
			})
		}
		if len(mappings) > 0 && cfg.Mappings == nil {
			cfg.Mappings = map[string]mapping.Spec{}
		}
		for k, v := range mappings {
			cfg.Mappings[k] = v
		}
	}
}

// startUpstream runs /authorize with connector_id and follows the broker's
// own redirects until the browser is sent off to another host (the
// upstream). It returns that redirect.
func (h *harness) startUpstream(br *browser, params url.Values, connectorID string) response {
	h.t.Helper()
	if connectorID != "" {
		params.Set("connector_id", connectorID)
	}
	r := h.authorize(br, params)
	return h.followBroker(br, r)
}

// followBroker follows redirects within the broker and returns the first
// answer that is not a redirect to the broker.
func (h *harness) followBroker(br *browser, r response) response {
	h.t.Helper()
	for i := 0; i < 5; i++ {
		if r.status != http.StatusFound && r.status != http.StatusSeeOther || r.location == nil {
			return r
		}
		if !strings.HasPrefix(r.location.String(), h.issuer+"/") {
			return r
		}
		r = br.get(r.location.String())
	}
	h.t.Fatalf("too many broker redirects, last %s", r.location)
	return r
}

// atUpstream plays the upstream IdP's authorize step: it GETs the upstream
// location and returns the URL the upstream sends the browser back to.
func (h *harness) atUpstream(br *browser, r response) *url.URL {
	h.t.Helper()
	if r.status != http.StatusFound || r.location == nil || strings.HasPrefix(r.location.String(), h.issuer+"/") {
		h.t.Fatalf("want a redirect to the upstream, got %d %v; body %s", r.status, r.location, r.body)
	}
	up := br.get(r.location.String())
	if up.status != http.StatusFound || up.location == nil {
		h.t.Fatalf("upstream authorize = %d, want 302; body %s", up.status, up.body)
	}
	if !strings.HasPrefix(up.location.String(), h.issuer+"/callback/") {
		h.t.Fatalf("upstream sent the browser to %s, want the broker's callback", up.location)
	}
	return up.location
}

// codeFrom checks that r redirects to the app with a code and returns it.
func (h *harness) codeFrom(r response, state string) string {
	h.t.Helper()
	if (r.status != http.StatusFound && r.status != http.StatusSeeOther) || r.location == nil {
		h.t.Fatalf("callback = %d, want a redirect to the app; body %s", r.status, r.body)
	}
	if !strings.HasPrefix(r.location.String(), appRedirect+"?") {
		h.t.Fatalf("callback redirected to %s, want %s", r.location, appRedirect)
	}
	q := r.location.Query()
	if got := q.Get("state"); got != state {
		h.t.Fatalf("state = %q, want %q", got, state)
	}
	if q.Get("code") == "" {
		h.t.Fatalf("redirect %s has no code", r.location)
	}
	return q.Get("code")
}

// leaks are strings an error page must never show: Go internals, error
// chains from connectors and libraries, upstream addresses.
var leaks = []string{"goroutine", "panic", ".go:", "runtime.", "oidc:", "saml:", "azuread:", "google:", "connectors", "x509", "crypto/", "dial tcp", "context deadline", "xml:", "jwt", "signature:", "127.0.0.1"}

// wantErrorPage checks r is a readable HTML error page with status in
// [400, 600) and, when code is set, that it names code.
func wantErrorPage(t testing.TB, r response, wantStatus int, code string) {
	t.Helper()
	if r.status != wantStatus {
		t.Fatalf("status = %d, want %d; body %s", r.status, wantStatus, r.body)
	}
	if r.status < 400 || r.status >= 600 {
		t.Fatalf("status = %d, want 4xx or 5xx", r.status)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Fatalf("Content-Type = %q, want text/html; body %s", ct, r.body)
	}
	if !strings.Contains(r.body, "<h1>") || !strings.Contains(r.body, `role="alert"`) {
		t.Fatalf("body is not an error page: %s", r.body)
	}
	if code != "" && !strings.Contains(r.body, "Error: "+code) {
		t.Errorf("page does not name code %q: %s", code, r.body)
	}
	lower := strings.ToLower(r.body)
	for _, l := range leaks {
		if strings.Contains(lower, strings.ToLower(l)) {
			t.Errorf("error page shows internal detail %q: %s", l, r.body)
		}
	}
}

// auditLines returns the audit log's JSON records.
func (h *harness) auditLines() []map[string]any {
	h.t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(h.audit.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			h.t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

// wantAudit checks the audit log holds an event naming connector, with
// every key in want equal (want may be nil).
func (h *harness) wantAudit(t testing.TB, event, connector string, want map[string]string) {
	t.Helper()
	lines := h.auditLines()
next:
	for _, m := range lines {
		if m["msg"] != event || m["connector"] != connector {
			continue
		}
		for k, v := range want {
			if got, _ := m[k].(string); got != v {
				continue next
			}
		}
		return
	}
	t.Errorf("no audit %q for connector %q with %v in:\n%s", event, connector, want, h.audit.String())
}

// auditCount counts audit events named event for connector.
func (h *harness) auditCount(event, connector string) int {
	n := 0
	for _, m := range h.auditLines() {
		if m["msg"] == event && m["connector"] == connector {
			n++
		}
	}
	return n
}
