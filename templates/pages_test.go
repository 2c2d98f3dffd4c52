package templates

import (
	"io/fs"
	"regexp"
	"strings"
	"testing"
)

// everyPage is data for each page in html/, so that a test can render all
// of them; TestEveryPageIsCovered keeps it complete.
func everyPage() map[string]any {
	page := Page{Title: "T", Issuer: "/sso"}
	return map[string]any{
		"chooser.html": ChooserData{Page: page, ClientName: "Wiki", Connectors: []Connector{{Name: "Google", URL: "/sso/login/google?req=1"}}, CancelURL: "/sso/cancel?req=1&csrf=c"},
		"password.html": PasswordData{Page: page, ClientName: "Wiki <beta>", ConnectorName: "Break-glass accounts", Action: "/sso/login/local", Prompt: "Username",
			CSRF: "c", RequestID: "r", BackURL: "/sso/login?req=r", CancelURL: "/sso/cancel?req=r&csrf=k"},
		"error.html":          ErrorData{Page: page, Heading: "Too many attempts", Message: "Wait a minute.", Code: "too_many_attempts", RetryURL: "/sso/login/local?req=r", CancelURL: "/sso/cancel?req=r&csrf=k"},
		"post.html":           PostData{Page: page, Action: "https://idp.example/sso", Fields: map[string]string{"SAMLRequest": "abc"}, CancelURL: "/sso/cancel?req=r&csrf=k"},
		"logged_out.html":     LoggedOutData{Page: page, FrontChannel: []string{"https://app.example/fc?iss=x&sid=y"}, Continue: "https://app.example/?state=s", Note: "n"},
		"device.html":         DeviceData{Page: page, Action: "/sso/device", UserCode: "BCDF-GHJK", Confirm: true, ClientName: "CLI <beta>", Scopes: []string{"openid", "offline_access"}, CSRF: "c"},
		"device_done.html":    DeviceDoneData{Page: page, Approved: true, ClientName: "CLI"},
		"logout_confirm.html": LogoutConfirmData{Page: page, Action: "/sso/logout", CSRF: "c"},
		"root.html": RootData{Page: page, Name: "sso.acme.com/sso", IssuerURL: "https://sso.acme.com/sso", DiscoveryURL: "https://sso.acme.com/sso/.well-known/openid-configuration",
			JWKSURL: "https://sso.acme.com/sso/keys", AdminEnabled: true, AdminURL: "http://127.0.0.1:5557"},
		"test_signin_done.html": TestSignInData{Page: page, ConnectorName: "Contoso", UpstreamSubject: "bob"},
	}
}

func TestEveryPageIsCovered(t *testing.T) {
	names, err := fs.Glob(pages, "html/*.html")
	if err != nil {
		t.Fatal(err)
	}
	data := everyPage()
	for _, n := range names {
		n = strings.TrimPrefix(n, "html/")
		if n == "layout.html" {
			continue
		}
		if _, ok := data[n]; !ok {
			t.Errorf("page %s is missing from everyPage", n)
		}
	}
}

// TestEveryPageFitsAPhone: every page tells phones to lay it out at the
// device's width (without it a phone renders a 980 px page and shrinks
// it) and loads the stylesheet that keeps the card inside the screen.
func TestEveryPageFitsAPhone(t *testing.T) {
	tm, err := New()
	if err != nil {
		t.Fatal(err)
	}
	viewport := regexp.MustCompile(`<meta name="viewport" content="width=device-width, initial-scale=1">`)
	for name, data := range everyPage() {
		var b strings.Builder
		if err := tm.Render(&b, name, data); err != nil {
			t.Fatalf("Render(%s) = %v", name, err)
		}
		if !viewport.MatchString(b.String()) {
			t.Errorf("%s has no viewport meta:\n%s", name, b.String())
		}
		if !strings.Contains(b.String(), `href="/sso/static/style.css"`) {
			t.Errorf("%s does not load the stylesheet", name)
		}
	}
}

// TestStyleKeepsTheCardOnAPhone checks the rules that keep a 375 px wide
// screen from scrolling sideways: no fixed width wider than a phone, a
// margin around the card on narrow screens, and long URLs broken inside
// it.
func TestStyleKeepsTheCardOnAPhone(t *testing.T) {
	css, err := fs.ReadFile(Static(), "style.css")
	if err != nil {
		t.Fatal(err)
	}
	s := string(css)
	for _, m := range regexp.MustCompile(`(?:^|[;{])\s*(?:min-)?width:\s*(\d+)px`).FindAllStringSubmatch(s, -1) {
		t.Errorf("style.css sets a fixed width %spx; use max-width or relative units", m[1])
	}
	narrow := regexp.MustCompile(`@media\s*\(max-width:\s*[\d.]+(?:rem|px|em)\)\s*\{[^@]*\.card\s*\{[^}]*margin:[^}]*\}`)
	if !narrow.MatchString(s) {
		t.Error("style.css has no narrow-screen rule giving .card a margin")
	}
	if !strings.Contains(s, "overflow-wrap:anywhere") {
		t.Error("style.css does not break long words (URLs, codes) inside the card")
	}
	if !strings.Contains(s, "box-sizing:border-box") {
		t.Error("style.css does not size boxes with their padding")
	}
}

func TestPagesOfferAWayBack(t *testing.T) {
	tm, err := New()
	if err != nil {
		t.Fatal(err)
	}
	data := everyPage()
	tests := []struct {
		name string
		data any
		want []string
		not  []string
	}{
		{"chooser.html", data["chooser.html"], []string{`href="/sso/cancel?req=1&amp;csrf=c"`, "Cancel"}, nil},
		{"password.html", data["password.html"], []string{"Sign in to Wiki &lt;beta&gt;", "Break-glass accounts", `href="/sso/cancel?req=r&amp;csrf=k"`, `href="/sso/login?req=r"`}, nil},
		{"password.html without a client name", PasswordData{ConnectorName: "Local"}, []string{"Sign in", "Local"}, []string{"Sign in to", "cancel"}},
		{"error.html", data["error.html"], []string{`href="/sso/login/local?req=r"`, "Try again", `href="/sso/cancel?req=r&amp;csrf=k"`}, []string{"start again from the application you were signing in to"}},
		{"error.html without links", ErrorData{Heading: "This sign-out request cannot be completed", Message: "No."}, []string{"This sign-out request cannot be completed", "Close this page"}, []string{"signing in to", "Try again", "Cancel"}},
		{"post.html", data["post.html"], []string{`href="/sso/cancel?req=r&amp;csrf=k"`}, nil},
		{"root.html", data["root.html"], []string{"sso.acme.com/sso",
			`href="https://sso.acme.com/sso/.well-known/openid-configuration"`,
			"https://sso.acme.com/sso/keys", "http://127.0.0.1:5557"}, nil},
		{"root.html without admin", RootData{Page: Page{Issuer: "/sso"}, Name: "sso.acme.com", DiscoveryURL: "https://sso.acme.com/.well-known/openid-configuration", JWKSURL: "https://sso.acme.com/keys"},
			[]string{"sso.acme.com", "/.well-known/openid-configuration"}, []string{"dmin"}},
		{"root.html with a remote admin listener", RootData{Page: Page{Issuer: "/sso"}, Name: "sso.acme.com", AdminEnabled: true},
			[]string{"admin API is enabled", "admin.addr"}, []string{"5557"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name, _, _ := strings.Cut(tt.name, " ")
			var b strings.Builder
			if err := tm.Render(&b, name, tt.data); err != nil {
				t.Fatalf("Render() = %v", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(b.String(), w) {
					t.Errorf("%s lacks %q:\n%s", tt.name, w, b.String())
				}
			}
			for _, w := range tt.not {
				if strings.Contains(b.String(), w) {
					t.Errorf("%s has %q:\n%s", tt.name, w, b.String())
				}
			}
		})
	}
}
