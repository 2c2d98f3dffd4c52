package console

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/fedbroker/fedbroker/broker/admin"
	"github.com/fedbroker/fedbroker/broker/observe"
	"github.com/fedbroker/fedbroker/broker/storage/memory"
)

func TestMaskedSettingsHideSecrets(t *testing.T) {
	var n yaml.Node
	src := `
issuer: https://idp.example
client_id: broker
client_secret: s3cret-value-1
bind_password: s3cret-value-2
private_key: s3cret-value-3
api_token: ""
ldap_url: ldaps://reader:s3cret-value-4@ldap.example:636
credentials:
  user: u
  pass: s3cret-value-5
scopes: [openid, email]
`
	if err := yaml.Unmarshal([]byte(src), &n); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, s := range maskedSettings(&n) {
		got[s.Key] = s.Value
	}
	for k, v := range got {
		if strings.Contains(v, "s3cret-value-") {
			t.Errorf("%s shows a secret: %q", k, v)
		}
	}
	want := map[string]string{
		"issuer": "https://idp.example", "client_id": "broker", "client_secret": "set", "bind_password": "set",
		"private_key": "set", "api_token": "not set", "ldap_url": "ldaps://reader:****@ldap.example:636",
		"credentials.user": "set", "credentials.pass": "set", "scopes[0]": "openid",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
}

func TestSessionsExpire(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	s := newSessions(memory.New(memory.WithClock(clock)), clock)
	ctx := context.Background()
	create := func() string {
		t.Helper()
		id, err := s.create(ctx, "token")
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	signedIn := func(id string) bool {
		t.Helper()
		_, ok, err := s.get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	id := create()
	if se, ok, err := s.get(ctx, id); !ok || err != nil || se.admin != "token" || se.csrf == "" {
		t.Fatalf("get = %+v %v %v", se, ok, err)
	}
	if signedIn("not-" + id) {
		t.Fatal("an unknown id is signed in")
	}
	now = now.Add(idleTimeout + time.Second)
	if signedIn(id) {
		t.Fatal("session outlived its idle timeout")
	}
	// Absolute: kept busy, it still ends.
	id = create()
	for range int(absoluteTimeout/(idleTimeout/2)) + 1 {
		now = now.Add(idleTimeout / 2)
		signedIn(id)
	}
	if signedIn(id) {
		t.Fatal("session outlived its absolute timeout")
	}
	id = create()
	s.end(ctx, id)
	if signedIn(id) {
		t.Fatal("ended session still signed in")
	}
	// The CSRF key of certificate sign-ins is one for every replica on the
	// store, and stays the same until it expires.
	a, err := s.certCSRF(ctx, []byte("cert"))
	if err != nil {
		t.Fatal(err)
	}
	other := newSessions(s.store, clock)
	if b, err := other.certCSRF(ctx, []byte("cert")); err != nil || b != a {
		t.Fatalf("certificate CSRF on another replica = %q, %v; want %q", b, err, a)
	}
	if b, _ := other.certCSRF(ctx, []byte("another cert")); b == a {
		t.Fatal("two certificates have one CSRF token")
	}
}

// A verified client certificate signs in without the form, named by its
// subject CN, with a CSRF token bound to the certificate.
func TestClientCertificateSignsIn(t *testing.T) {
	c := New(Deps{Store: memory.New(), Credentials: admin.NewCredentials(admin.Options{ClientCertOK: true})})
	cert := &x509.Certificate{Subject: pkix.Name{CommonName: "ops-alice"}, Raw: []byte("cert-der")}
	r := httptest.NewRequest(http.MethodGet, "/console/audit", nil)
	r.TLS = &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{cert}}}
	id, ok, err := c.identify(r)
	if !ok || err != nil || id.name != "ops-alice" || id.csrf == "" {
		t.Fatalf("identify = %+v %v %v", id, ok, err)
	}
	w := httptest.NewRecorder()
	c.Handler().ServeHTTP(w, r)
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "ops-alice") {
		t.Fatalf("audit page over mTLS = %d\n%s", w.Code, w.Body.String())
	}
	// Without a verified certificate: the login page.
	r = httptest.NewRequest(http.MethodGet, "/console/audit", nil)
	w = httptest.NewRecorder()
	c.Handler().ServeHTTP(w, r)
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/console/login" {
		t.Fatalf("without a certificate = %d %s", w.Code, w.Header().Get("Location"))
	}
	// Certificates not accepted: not signed in.
	c2 := New(Deps{Store: memory.New(), Credentials: admin.NewCredentials(admin.Options{Token: "t"})})
	r.TLS = &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{cert}}}
	if _, ok, _ := c2.identify(r); ok {
		t.Fatal("a certificate signs in when only the token is accepted")
	}
}

func TestChartDrawsPerMinuteSeries(t *testing.T) {
	ch := buildChart("Sign-ins", "sign-ins", []observe.Series{
		{SeriesKey: observe.SeriesKey{Kind: "sign_ins", Label: "local success"}, PerMinute: []float64{0, 2, 4}, Total: 6},
		{SeriesKey: observe.SeriesKey{Kind: "sign_ins", Label: "local rejected"}, PerMinute: []float64{1, 0, 0}, Total: 1},
	})
	if ch.Max != 4 || len(ch.Lines) != 2 || ch.Lines[0].Class != "c0" || ch.Lines[1].Class != "c1" {
		t.Fatalf("chart = %+v", ch)
	}
	if pts := strings.Fields(ch.Lines[0].Points); len(pts) != 3 || pts[2] != "596.0,4.0" || pts[0] != "4.0,146.0" {
		t.Errorf("points = %q", ch.Lines[0].Points)
	}
	if !strings.Contains(ch.Desc, "7 in all") {
		t.Errorf("desc = %q", ch.Desc)
	}
}

func TestTemplatesParseAndLayoutIsComplete(t *testing.T) {
	pages, err := parsePages()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"login.html", "error.html", "overview.html", "connectors.html", "clients.html", "people.html", "person.html", "audit.html", "actions.html"} {
		if pages[name] == nil {
			t.Errorf("no page %s", name)
		}
	}
}
