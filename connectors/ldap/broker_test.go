package ldap_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fedbroker/fedbroker/broker"
	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/keys"
	"github.com/fedbroker/fedbroker/broker/storage/memory"
)

const brokerYAML = `
issuer: %s
storage:
  type: memory
connectors:
  - id: corp
    type: ldap
    name: Acme directory
    config:
      host: %s
      tls: none
      bind_dn: cn=fedbroker,ou=services,dc=acme,dc=com
      bind_password: ${LDAP_BIND_PASSWORD}
      user_search:
        base_dn: ou=people,dc=acme,dc=com
        filter: (objectClass=inetOrgPerson)
        username_attr: uid
      id_attr: employeeNumber
      email_attr: mail
      name_attr: cn
      group_search:
        base_dn: ou=groups,dc=acme,dc=com
        filter: (objectClass=groupOfNames)
        user_matcher: member=dn
        name_attr: cn
      timeout: 1s
clients:
  - id: app
    name: Example App
    public: true
    redirect_uris: [http://127.0.0.1:9999/cb]
`

// testBroker runs a broker with one ldap connector at host.
func testBroker(t *testing.T, host string) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	issuer := "http://" + srv.Listener.Addr().String()
	env := map[string]string{"LDAP_BIND_PASSWORD": bindPW}
	cfg, err := config.Parse(fmt.Appendf(nil, brokerYAML, issuer, host), func(k string) string { return env[k] })
	if err != nil {
		t.Fatalf("config.Parse: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	store := memory.New()
	km, err := keys.New(ctx, store, keys.Options{Algorithm: cfg.Signing.Algorithm, Algorithms: cfg.Signing.Algorithms, MaxTokenLifetime: 5 * time.Minute})
	if err != nil {
		t.Fatalf("keys.New: %v", err)
	}
	b, err := broker.New(ctx, cfg, broker.Options{Storage: store, Keys: km})
	if err != nil {
		t.Fatalf("broker.New: %v", err)
	}
	srv.Config.Handler = b.Handler()
	srv.Start()
	t.Cleanup(srv.Close)
	return issuer
}

type page struct {
	status   int
	body     string
	location *url.URL
}

func fetch(t *testing.T, c *http.Client, method, u string, form url.Values) page {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	p := page{status: resp.StatusCode, body: string(b)}
	if loc := resp.Header.Get("Location"); loc != "" {
		p.location, _ = resp.Request.URL.Parse(loc)
	}
	return p
}

var (
	reqField  = regexp.MustCompile(`name="req" value="([^"]+)"`)
	csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
)

// signIn starts a sign-in at connector corp and posts user and password
// to its form; it returns the answer to the post and the PKCE verifier.
func signIn(t *testing.T, issuer, user, password string) (page, string) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	verifier := strings.Repeat("v", 50)
	sum := sha256.Sum256([]byte(verifier))
	q := url.Values{
		"client_id": {"app"}, "redirect_uri": {"http://127.0.0.1:9999/cb"}, "response_type": {"code"},
		"scope": {"openid profile email groups"}, "state": {"st-1"}, "nonce": {"n-1"}, "connector_id": {"corp"},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"},
	}
	r := fetch(t, c, http.MethodGet, issuer+"/authorize?"+q.Encode(), nil)
	if r.status != http.StatusFound || r.location == nil {
		t.Fatalf("authorize = %d; body %s", r.status, r.body)
	}
	form := fetch(t, c, http.MethodGet, r.location.String(), nil)
	req, csrf := reqField.FindStringSubmatch(form.body), csrfField.FindStringSubmatch(form.body)
	if form.status != http.StatusOK || req == nil || csrf == nil {
		t.Fatalf("login page = %d without req/csrf: %s", form.status, form.body)
	}
	action := *r.location
	action.RawQuery = ""
	return fetch(t, c, http.MethodPost, action.String(), url.Values{"req": {req[1]}, "csrf": {csrf[1]}, "login": {user}, "password": {password}}), verifier
}

func TestBrokerSignIn(t *testing.T) {
	issuer := testBroker(t, directory(t).Addr)
	done, verifier := signIn(t, issuer, "alice", "alice-pw")
	if done.status != http.StatusSeeOther || done.location == nil || done.location.Query().Get("code") == "" {
		t.Fatalf("login POST = %d, want 303 with a code; body %s", done.status, done.body)
	}
	tok := fetch(t, http.DefaultClient, http.MethodPost, issuer+"/token", url.Values{
		"grant_type": {"authorization_code"}, "code": {done.location.Query().Get("code")}, "client_id": {"app"},
		"redirect_uri": {"http://127.0.0.1:9999/cb"}, "code_verifier": {verifier},
	})
	var tr struct {
		IDToken string `json:"id_token"`
	}
	if err := json.Unmarshal([]byte(tok.body), &tr); err != nil || tok.status != http.StatusOK {
		t.Fatalf("token = %d: %s", tok.status, tok.body)
	}
	parts := strings.Split(tr.IDToken, ".")
	if len(parts) != 3 {
		t.Fatalf("id_token %q is not a JWS", tr.IDToken)
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	if claims["email"] != "alice@acme.com" || claims["name"] != "Alice Liddell" || fmt.Sprint(claims["groups"]) != "[admins eng]" {
		t.Errorf("ID token claims %v; want alice's email, name and groups [admins eng]", claims)
	}

	// Wrong password and unknown user: the same page, the same status.
	wrong, _ := signIn(t, issuer, "alice", "nope")
	unknown, _ := signIn(t, issuer, "mallory", "nope")
	if wrong.status != http.StatusUnauthorized || unknown.status != wrong.status {
		t.Errorf("wrong password = %d, unknown user = %d; want 401 both", wrong.status, unknown.status)
	}
	if strip(wrong.body, "alice") != strip(unknown.body, "mallory") {
		t.Errorf("the pages for a wrong password and an unknown user differ:\n%s\n----\n%s", wrong.body, unknown.body)
	}
}

// strip removes what differs by design between two login pages: the
// request's fields and the username typed.
func strip(body, user string) string {
	body = reqField.ReplaceAllString(body, "")
	body = csrfField.ReplaceAllString(body, "")
	body = regexp.MustCompile(`(req|csrf)=[A-Za-z0-9_-]+`).ReplaceAllString(body, "")
	return strings.ReplaceAll(body, user, "USER")
}

func TestBrokerDirectoryDown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	issuer := testBroker(t, addr)
	start := time.Now()
	done, _ := signIn(t, issuer, "alice", "alice-pw")
	if done.status != http.StatusBadGateway || !strings.Contains(done.body, "could not be reached") {
		t.Errorf("login POST = %d, want 502 saying the directory could not be reached; body %s", done.status, done.body)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("took %v", d)
	}
}
