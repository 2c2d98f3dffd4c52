package azuread

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/fedbroker/fedbroker/connectors"
	"github.com/fedbroker/fedbroker/connectors/oidc"
	"github.com/fedbroker/fedbroker/connectors/testidp"
)

const (
	callbackURL = "https://broker.example/callback/entra"
	tenantA     = "11111111-1111-1111-1111-111111111111"
	tenantB     = "22222222-2222-2222-2222-222222222222"
	oid         = "aaaaaaaa-0000-0000-0000-000000000001"
)

func newIdP(t *testing.T) *testidp.IdP {
	t.Helper()
	idp := testidp.New(testidp.Options{Algorithm: "RS256"})
	t.Cleanup(idp.Close)
	return idp
}

// entraUser makes the login user a member of tenant tid, with claims
// overriding the defaults (nil removes one).
func entraUser(idp *testidp.IdP, tid string, claims map[string]any, groups ...testidp.Group) {
	c := map[string]any{
		"iss": idp.URL() + "/" + tid + "/v2.0", "tid": tid, "oid": oid,
		"preferred_username": "ada@contoso.com", "email": "ada@contoso.com",
		"roles": []any{"Admin", "Reader"},
	}
	for k, v := range claims {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	idp.SetUser(testidp.User{Subject: "pairwise-sub-1", Claims: c, Groups: groups})
}

func singleTenant(idp *testidp.IdP) Config {
	idp.SetIssuer(idp.URL() + "/" + tenantA + "/v2.0")
	return Config{ClientID: idp.ClientID(), ClientSecret: idp.ClientSecret(), Tenant: tenantA, LoginURL: idp.URL(), GraphURL: idp.URL()}
}

func multiTenant(idp *testidp.IdP, allowed ...string) Config {
	idp.SetIssuer(idp.URL() + "/{tenantid}/v2.0")
	return Config{ClientID: idp.ClientID(), ClientSecret: idp.ClientSecret(), Tenant: TenantOrganizations,
		AllowedTenants: allowed, LoginURL: idp.URL(), GraphURL: idp.URL()}
}

func open(t *testing.T, cfg Config) *oidc.Connector {
	t.Helper()
	if errs := cfg.Validate(); len(errs) > 0 {
		t.Fatalf("Validate() = %v", errs)
	}
	impl, err := cfg.Open(context.Background(), "entra", connectors.Options{HTTPClient: &http.Client{}, CallbackURL: callbackURL})
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

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	var ue *connectors.UserError
	if !errors.As(err, &ue) || ue.Code != code || ue.Message == "" {
		t.Fatalf("error = %v, want *connectors.UserError with code %q and a message", err, code)
	}
}

func TestSingleTenantFlow(t *testing.T) {
	idp := newIdP(t)
	cfg := singleTenant(idp)
	cfg.Groups = GroupsIDs
	entraUser(idp, tenantA, map[string]any{"iss": nil, "groups": []any{"g1", "g2"}})
	c := open(t, cfg)
	id, err := login(t, c)
	if err != nil {
		t.Fatalf("login error = %v", err)
	}
	if want := tenantA + "/" + oid; id.Subject != want {
		t.Errorf("Subject = %q, want %q", id.Subject, want)
	}
	if diff := cmp.Diff([]any{"Admin", "Reader"}, id.Claims["roles"]); diff != "" {
		t.Errorf("Claims[roles] (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]any{"g1", "g2"}, id.Sources["groups"]); diff != "" {
		t.Errorf("Sources[groups] from the token (-want +got):\n%s", diff)
	}
	if _, err := c.Refresh(context.Background(), connectors.Scopes{}, id); err != nil {
		t.Errorf("Refresh() error = %v", err)
	}
	idp.DisableUser("pairwise-sub-1")
	_, err = c.Refresh(context.Background(), connectors.Scopes{}, id)
	wantCode(t, err, oidc.CodeRefreshDenied)
}

func TestSubjectStableAcrossUPNChange(t *testing.T) {
	idp := newIdP(t)
	cfg := multiTenant(idp, tenantA)
	entraUser(idp, tenantA, nil)
	c := open(t, cfg)
	first, err := login(t, c)
	if err != nil {
		t.Fatalf("login error = %v", err)
	}
	entraUser(idp, tenantA, map[string]any{"preferred_username": "ada.lovelace@contoso.com", "email": "ada.lovelace@contoso.com", "upn": "ada.lovelace@contoso.com"})
	second, err := login(t, c)
	if err != nil {
		t.Fatalf("login after upn change error = %v", err)
	}
	if first.Subject != second.Subject {
		t.Errorf("Subject changed with the upn: %q then %q", first.Subject, second.Subject)
	}
	// A refresh after the change keeps the subject too.
	if _, err := c.Refresh(context.Background(), connectors.Scopes{}, first); err != nil {
		t.Errorf("Refresh() after upn change error = %v", err)
	}
	// The same oid in another tenant is another account.
	cfg2 := multiTenant(idp, tenantA, tenantB)
	entraUser(idp, tenantB, nil)
	other, err := login(t, open(t, cfg2))
	if err != nil {
		t.Fatalf("login in tenant B error = %v", err)
	}
	if other.Subject == first.Subject {
		t.Errorf("Subject %q is the same in two tenants", other.Subject)
	}
}

func TestTenantRules(t *testing.T) {
	tests := []struct {
		name   string
		multi  bool
		tid    string
		claims map[string]any
		want   string // "" for success
	}{
		{"multi allowed", true, tenantA, nil, ""},
		{"multi tenant not allowed", true, tenantB, nil, CodeTenantNotAllowed},
		{"multi iss not matching tid", true, tenantA, map[string]any{"iss": "IDP/" + tenantB + "/v2.0"}, oidc.CodeInvalidToken},
		{"multi iss template", true, tenantA, map[string]any{"iss": "IDP/{tenantid}/v2.0"}, oidc.CodeInvalidToken},
		{"multi no tid", true, tenantA, map[string]any{"tid": nil}, oidc.CodeInvalidToken},
		{"no oid", true, tenantA, map[string]any{"oid": nil}, oidc.CodeInvalidToken},
		{"single tid differs", false, tenantA, map[string]any{"iss": nil, "tid": tenantB}, CodeTenantNotAllowed},
		{"single iss of other tenant", false, tenantA, map[string]any{"iss": "IDP/" + tenantB + "/v2.0"}, oidc.CodeInvalidToken},
		{"unverified email is accepted", true, tenantA, map[string]any{"email_verified": false}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			idp := newIdP(t)
			var cfg Config
			if tt.multi {
				cfg = multiTenant(idp, tenantA)
			} else {
				cfg = singleTenant(idp)
			}
			claims := map[string]any{}
			for k, v := range tt.claims {
				if s, ok := v.(string); ok && len(s) > 3 && s[:3] == "IDP" {
					v = idp.URL() + s[3:]
				}
				claims[k] = v
			}
			entraUser(idp, tt.tid, claims)
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

func manyGroups(n int) ([]testidp.Group, []any, []any) {
	var gs []testidp.Group
	var ids, names []any
	for i := range n {
		g := testidp.Group{ID: fmt.Sprintf("00000000-0000-0000-0000-%012d", i), DisplayName: fmt.Sprintf("team-%03d", i)}
		gs = append(gs, g)
		ids = append(ids, g.ID)
		names = append(names, g.DisplayName)
	}
	return gs, ids, names
}

func TestGroupsOverage(t *testing.T) {
	gs, ids, names := manyGroups(250)
	overage := map[string]any{
		"_claim_names":   map[string]any{"groups": "src1"},
		"_claim_sources": map[string]any{"src1": map[string]any{"endpoint": "https://graph.windows.net/x/users/y/getMemberObjects"}},
	}
	tests := []struct {
		name   string
		mode   string
		claims map[string]any
		want   []any
	}{
		{"overage ids", GroupsIDs, overage, ids},
		{"overage names", GroupsNames, overage, names},
		{"hasgroups", GroupsIDs, map[string]any{"hasgroups": true}, ids},
		{"no groups claim", GroupsIDs, nil, ids},
		{"names with a complete claim", GroupsNames, map[string]any{"groups": []any{"x"}}, names},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			idp := newIdP(t)
			cfg := multiTenant(idp, tenantA)
			cfg.Groups = tt.mode
			entraUser(idp, tenantA, tt.claims, gs...)
			id, err := login(t, open(t, cfg))
			if err != nil {
				t.Fatalf("login error = %v", err)
			}
			if diff := cmp.Diff(tt.want, id.Sources["groups"]); diff != "" {
				t.Errorf("Sources[groups] (-want +got):\n%s", diff)
			}
		})
	}
}

func TestGroupsGraphFailures(t *testing.T) {
	hostile := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"value":           []any{map[string]any{"@odata.type": "#microsoft.graph.group", "id": "g1"}},
			"@odata.nextLink": "https://attacker.example/steal",
		})
	}))
	t.Cleanup(hostile.Close)
	// Graph down: every connection is dropped before an answer. (A
	// closed server's address is not down for long: the next server
	// this test starts may be given its port.)
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			_ = conn.Close()
		}
	}))
	t.Cleanup(down.Close)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(3 * time.Second):
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(slow.Close)
	throttled := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "10")
		w.WriteHeader(http.StatusTooManyRequests)
	}))
	t.Cleanup(throttled.Close)
	forbidden := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"error":{"code":"Authorization_RequestDenied"}}`, http.StatusForbidden)
	}))
	t.Cleanup(forbidden.Close)
	tests := []struct {
		name  string
		graph string
		want  string
	}{
		{"graph down", down.URL, oidc.CodeUnavailable},
		{"graph slow", slow.URL, oidc.CodeUnavailable},
		{"graph throttling", throttled.URL, oidc.CodeUnavailable},
		{"graph forbidden", forbidden.URL, CodeGroupsFailed},
		{"nextLink to another host", hostile.URL, CodeGroupsFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			idp := newIdP(t)
			cfg := multiTenant(idp, tenantA)
			cfg.Groups = GroupsIDs
			cfg.GraphURL = tt.graph
			cfg.Timeout = 500 * time.Millisecond
			entraUser(idp, tenantA, map[string]any{"hasgroups": true})
			start := time.Now()
			_, err := login(t, open(t, cfg))
			wantCode(t, err, tt.want)
			if d := time.Since(start); d > 2500*time.Millisecond {
				t.Errorf("login took %s, want the 500ms Graph timeout to apply", d)
			}
		})
	}
}

func TestGroupsRefetchedOnRefresh(t *testing.T) {
	gs, ids, _ := manyGroups(5)
	idp := newIdP(t)
	cfg := multiTenant(idp, tenantA)
	cfg.Groups = GroupsIDs
	entraUser(idp, tenantA, map[string]any{"hasgroups": true}, gs...)
	c := open(t, cfg)
	id, err := login(t, c)
	if err != nil {
		t.Fatal(err)
	}
	entraUser(idp, tenantA, map[string]any{"hasgroups": true}, gs[:2]...)
	nid, err := c.Refresh(context.Background(), connectors.Scopes{}, id)
	if err != nil {
		t.Fatalf("Refresh() error = %v", err)
	}
	if diff := cmp.Diff(ids[:2], nid.Sources["groups"]); diff != "" {
		t.Errorf("Sources[groups] after refresh (-want +got):\n%s", diff)
	}
}

func TestDiscoveryMismatch(t *testing.T) {
	idp := newIdP(t)
	cfg := singleTenant(idp)
	idp.SetIssuer(idp.URL() + "/" + tenantB + "/v2.0")
	if _, err := cfg.Open(context.Background(), "entra", connectors.Options{HTTPClient: &http.Client{}}); err == nil {
		t.Fatal("Open() with another tenant's discovery issuer succeeded")
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name  string
		cfg   Config
		paths []string
	}{
		{"single", Config{ClientID: "c", ClientSecret: "s", Tenant: tenantA}, nil},
		{"multi", Config{ClientID: "c", ClientSecret: "s", Tenant: TenantCommon, AllowedTenants: []string{tenantA}, Groups: GroupsNames}, nil},
		{"empty", Config{}, []string{"client_id", "client_secret", "tenant"}},
		{"multi without allowlist", Config{ClientID: "c", ClientSecret: "s", Tenant: TenantOrganizations}, []string{"allowed_tenants"}},
		{"domain tenant", Config{ClientID: "c", ClientSecret: "s", Tenant: "contoso.onmicrosoft.com"}, []string{"tenant"}},
		{"allowlist with single", Config{ClientID: "c", ClientSecret: "s", Tenant: tenantA, AllowedTenants: []string{tenantB}}, []string{"allowed_tenants"}},
		{"bad values", Config{ClientID: "c", ClientSecret: "s", Tenant: TenantCommon, AllowedTenants: []string{"Contoso"}, Groups: "all", GraphURL: "graph"},
			[]string{"allowed_tenants[0]", "graph_url", "groups"}},
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
