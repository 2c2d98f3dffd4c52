package google

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/fedbroker/fedbroker/connectors"
	"github.com/fedbroker/fedbroker/connectors/oidc"
	"github.com/fedbroker/fedbroker/connectors/testidp"
)

const callbackURL = "https://broker.example/callback/google"

func newIdP(t *testing.T) *testidp.IdP {
	t.Helper()
	idp := testidp.New(testidp.Options{})
	t.Cleanup(idp.Close)
	return idp
}

func setUser(idp *testidp.IdP, claims map[string]any, groups ...testidp.Group) {
	c := map[string]any{"email": "ada@acme.com", "email_verified": true, "hd": "acme.com"}
	for k, v := range claims {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	idp.SetUser(testidp.User{Subject: "1234567890", Claims: c, Groups: groups})
}

func open(t *testing.T, cfg Config) *oidc.Connector {
	t.Helper()
	if errs := cfg.Validate(); len(errs) > 0 {
		t.Fatalf("Validate() = %v", errs)
	}
	impl, err := cfg.Open(context.Background(), "google", connectors.Options{HTTPClient: &http.Client{}, CallbackURL: callbackURL})
	if err != nil {
		t.Fatalf("Open() error = %v", err)
	}
	return impl.(*oidc.Connector)
}

func login(t *testing.T, c *oidc.Connector) (connectors.Identity, error) {
	t.Helper()
	ctx := context.Background()
	u, st, err := c.LoginURL(ctx, connectors.Scopes{}, callbackURL, "st")
	if err != nil {
		t.Fatalf("LoginURL() error = %v", err)
	}
	r, err := testidp.CallbackRequest(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	return c.HandleCallback(ctx, connectors.Scopes{}, st, r)
}

func baseConfig(idp *testidp.IdP) Config {
	return Config{Issuer: idp.URL(), ClientID: idp.ClientID(), ClientSecret: idp.ClientSecret(), HostedDomains: []string{"acme.com"}}
}

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	var ue *connectors.UserError
	if !errors.As(err, &ue) || ue.Code != code || ue.Message == "" {
		t.Fatalf("error = %v, want *connectors.UserError with code %q and a message", err, code)
	}
}

func TestFlow(t *testing.T) {
	idp := newIdP(t)
	setUser(idp, nil)
	c := open(t, baseConfig(idp))
	u, _, err := c.LoginURL(context.Background(), connectors.Scopes{}, callbackURL, "st")
	if err != nil {
		t.Fatal(err)
	}
	lu, _ := url.Parse(u)
	for k, want := range map[string]string{"hd": "acme.com", "access_type": "offline", "prompt": "consent", "scope": "openid profile email"} {
		if got := lu.Query().Get(k); got != want {
			t.Errorf("LoginURL %s = %q, want %q", k, got, want)
		}
	}
	id, err := login(t, c)
	if err != nil {
		t.Fatalf("login error = %v", err)
	}
	if id.Subject != "1234567890" || id.Claims["hd"] != "acme.com" {
		t.Errorf("Identity = %q %v, want subject 1234567890 with hd acme.com", id.Subject, id.Claims)
	}
	if len(id.ConnectorData) == 0 {
		t.Error("ConnectorData empty, want the refresh token kept (access_type=offline)")
	}
	if _, ok := id.Sources["groups"]; ok {
		t.Errorf("Sources[groups] = %v without a service account", id.Sources["groups"])
	}
	if _, err := c.Refresh(context.Background(), connectors.Scopes{}, id); err != nil {
		t.Errorf("Refresh() error = %v", err)
	}
	idp.DisableUser("1234567890")
	_, err = c.Refresh(context.Background(), connectors.Scopes{}, id)
	wantCode(t, err, oidc.CodeRefreshDenied)
}

func TestHostedDomain(t *testing.T) {
	tests := []struct {
		name    string
		claims  map[string]any
		domains []string
		want    string // "" for success
	}{
		{"allowed", nil, []string{"acme.com"}, ""},
		{"second of two", map[string]any{"hd": "acme.org"}, []string{"acme.com", "acme.org"}, ""},
		{"hd missing", map[string]any{"hd": nil}, []string{"acme.com"}, CodeDomainNotAllowed},
		{"wrong hd", map[string]any{"hd": "evil.com"}, []string{"acme.com"}, CodeDomainNotAllowed},
		{"email suffix trick", map[string]any{"email": "a@acme.com", "hd": "other.com"}, []string{"acme.com"}, CodeDomainNotAllowed},
		{"hd case differs", map[string]any{"hd": "ACME.com"}, []string{"acme.com"}, CodeDomainNotAllowed},
		{"no allowlist, personal account", map[string]any{"hd": nil, "email": "ada@gmail.com"}, nil, ""},
		{"email not verified", map[string]any{"email_verified": false}, []string{"acme.com"}, oidc.CodeEmailNotVerified},
		{"email_verified as string", map[string]any{"email_verified": "true"}, []string{"acme.com"}, oidc.CodeEmailNotVerified},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			idp := newIdP(t)
			setUser(idp, tt.claims)
			cfg := baseConfig(idp)
			cfg.HostedDomains = tt.domains
			id, err := login(t, open(t, cfg))
			if tt.want == "" {
				if err != nil {
					t.Fatalf("login error = %v, want success", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("login = %+v, want %s", id, tt.want)
			}
			wantCode(t, err, tt.want)
		})
	}
}

func groups(n int) ([]testidp.Group, []any) {
	var gs []testidp.Group
	var emails []any
	for i := range n {
		e := fmt.Sprintf("g%03d@acme.com", i)
		gs = append(gs, testidp.Group{ID: fmt.Sprint(i), Email: e, DisplayName: e})
		emails = append(emails, e)
	}
	return gs, emails
}

func saConfig(t *testing.T, idp *testidp.IdP, key []byte) Config {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sa.json")
	if err := os.WriteFile(path, key, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := baseConfig(idp)
	cfg.ServiceAccountFile = path
	cfg.AdminEmail = "admin@acme.com"
	cfg.DirectoryURL = idp.URL()
	return cfg
}

func TestGroups(t *testing.T) {
	idp := newIdP(t)
	gs, want := groups(250)
	setUser(idp, nil, gs...)
	cfg := saConfig(t, idp, idp.ServiceAccount("broker@acme.iam.gserviceaccount.com"))
	c := open(t, cfg)
	id, err := login(t, c)
	if err != nil {
		t.Fatalf("login error = %v", err)
	}
	if diff := cmp.Diff(want, id.Sources["groups"]); diff != "" {
		t.Errorf("Sources[groups] (-want +got):\n%s", diff)
	}
	// Refresh fetches the groups again.
	setUser(idp, nil, gs[:3]...)
	nid, err := c.Refresh(context.Background(), connectors.Scopes{}, id)
	if err != nil {
		t.Fatalf("Refresh() error = %v", err)
	}
	if diff := cmp.Diff(want[:3], nid.Sources["groups"]); diff != "" {
		t.Errorf("Sources[groups] after refresh (-want +got):\n%s", diff)
	}
}

func TestGroupsServiceAccountRejected(t *testing.T) {
	idp := newIdP(t)
	setUser(idp, nil)
	key := idp.ServiceAccount("broker@acme.iam.gserviceaccount.com")
	forged := []byte(strings.Replace(string(key), "broker@acme", "intruder@acme", 1))
	_, err := login(t, open(t, saConfig(t, idp, forged)))
	wantCode(t, err, oidc.CodeUpstreamError)
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"type":"user"}`), 0o600)
	tests := []struct {
		name  string
		cfg   Config
		paths []string
	}{
		{"good", Config{ClientID: "c", ClientSecret: "s", HostedDomains: []string{"acme.com"}}, nil},
		{"empty", Config{}, []string{"client_id", "client_secret"}},
		{"bad domains", Config{ClientID: "c", ClientSecret: "s", HostedDomains: []string{"ACME.com", "@acme.com", ""}},
			[]string{"hosted_domains[0]", "hosted_domains[1]", "hosted_domains[2]"}},
		{"bad service account", Config{ClientID: "c", ClientSecret: "s", ServiceAccountFile: bad, DirectoryURL: "nope"},
			[]string{"admin_email", "directory_url", "service_account_file"}},
		{"missing file", Config{ClientID: "c", ClientSecret: "s", ServiceAccountFile: filepath.Join(dir, "none"), AdminEmail: "a@acme.com"},
			[]string{"service_account_file"}},
		{"admin without file", Config{ClientID: "c", ClientSecret: "s", AdminEmail: "a@acme.com"}, []string{"service_account_file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var paths []string
			for _, e := range tt.cfg.Validate() {
				paths = append(paths, e.Path)
			}
			if diff := cmp.Diff(tt.paths, paths); diff != "" {
				t.Errorf("Validate() paths (-want +got):\n%s", diff)
			}
		})
	}
}
