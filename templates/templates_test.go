package templates

import (
	"io/fs"
	"regexp"
	"strings"
	"testing"
)

func TestRender(t *testing.T) {
	tm, err := New()
	if err != nil {
		t.Fatal(err)
	}
	page := Page{Title: "T", Issuer: "/sso"}
	tests := []struct {
		name string
		data any
		want []string
	}{
		{"chooser.html", ChooserData{Page: page, ClientName: "Wiki", Connectors: []Connector{{Name: "Acme <Google>", URL: "/sso/login/google?req=1"}}}, []string{"Sign in to Wiki", "Acme &lt;Google&gt;", `href="/sso/login/google?req=1"`}},
		{"password.html", PasswordData{Page: page, ConnectorName: "Local", Action: "/sso/login/local", Prompt: "Username", CSRF: "c", RequestID: "r", Invalid: true, Username: `"><script>`}, []string{`name="csrf" value="c"`, "not correct", "&#34;&gt;&lt;script&gt;"}},
		{"error.html", ErrorData{Page: page, Heading: "Refused", Message: "<b>no</b>", Code: "access_denied"}, []string{"&lt;b&gt;no&lt;/b&gt;", "access_denied"}},
		{"post.html", PostData{Page: page, Action: "https://idp.example/sso", Fields: map[string]string{"SAMLRequest": "abc"}}, []string{`action="https://idp.example/sso"`, `name="SAMLRequest" value="abc"`, `src="/sso/static/autopost.js"`}},
		{"logged_out.html", LoggedOutData{Page: page}, []string{"Signed out"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			if err := tm.Render(&b, tt.name, tt.data); err != nil {
				t.Fatalf("Render() = %v", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(b.String(), w) {
					t.Errorf("Render(%s) lacks %q:\n%s", tt.name, w, b.String())
				}
			}
		})
	}
	if err := tm.Render(&strings.Builder{}, "nope.html", nil); err == nil {
		t.Error("Render of an unknown page succeeded")
	}
}

// TestNoExternalAssetsOrInlineScripts keeps the pages compatible with the
// broker's Content-Security-Policy (default-src 'none'; script-src 'self').
func TestNoExternalAssetsOrInlineScripts(t *testing.T) {
	external := regexp.MustCompile(`(src|href)="(https?:)?//`)
	inline := regexp.MustCompile(`<script>|<script [^>]*>[^<]+</script>|\son[a-z]+="|style="`)
	err := fs.WalkDir(pages, "html", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := pages.ReadFile(path)
		if err != nil {
			return err
		}
		if m := external.Find(b); m != nil {
			t.Errorf("%s loads an external asset: %s", path, m)
		}
		if m := inline.Find(b); m != nil {
			t.Errorf("%s has inline script or style: %s", path, m)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fs.Stat(Static(), "style.css"); err != nil {
		t.Errorf("static style.css: %v", err)
	}
}
