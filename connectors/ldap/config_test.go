package ldap_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fedbroker/fedbroker/connectors/ldap"
)

func TestValidate(t *testing.T) {
	notPEM := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		change func(c *ldap.Config)
		paths  []string // want exactly these problem paths
		substr string   // in the first message
	}{
		{"valid", func(c *ldap.Config) {}, nil, ""},
		{"valid direct bind", func(c *ldap.Config) {
			c.BindDN, c.BindPassword, c.UserDNTemplate = "", "", "uid={username},ou=people,dc=acme,dc=com"
		}, nil, ""},
		{"valid UPN direct bind with search", func(c *ldap.Config) {
			c.BindDN, c.BindPassword, c.UserDNTemplate = "", "", "{username}@corp.acme.com"
		}, nil, ""},
		{"no host", func(c *ldap.Config) { c.Host = "" }, []string{"host"}, "required"},
		{"host without port", func(c *ldap.Config) { c.Host = "ldap.acme.com" }, []string{"host"}, "host:port"},
		{"no tls", func(c *ldap.Config) { c.TLS = "" }, []string{"tls"}, "ldaps, starttls or none"},
		{"bad tls", func(c *ldap.Config) { c.TLS = "ssl" }, []string{"tls"}, `"ssl"`},
		{"clear text remote", func(c *ldap.Config) { c.Host = "ldap.acme.com:389" }, []string{"tls"}, "insecure_no_tls"},
		{"clear text remote allowed", func(c *ldap.Config) { c.Host, c.InsecureNoTLS = "ldap.acme.com:389", true }, nil, ""},
		{"clear text localhost", func(c *ldap.Config) { c.Host = "localhost:389" }, nil, ""},
		{"insecure flag with tls", func(c *ldap.Config) { c.TLS, c.InsecureNoTLS = ldap.TLSLDAPS, true }, []string{"insecure_no_tls"}, "tls: none"},
		{"root_ca missing", func(c *ldap.Config) { c.TLS, c.RootCA = ldap.TLSLDAPS, "/nonexistent/ca.pem" }, []string{"root_ca"}, "cannot read"},
		{"root_ca not PEM", func(c *ldap.Config) { c.TLS, c.RootCA = ldap.TLSStartTLS, notPEM }, []string{"root_ca"}, "no PEM"},
		{"no bind", func(c *ldap.Config) { c.BindDN, c.BindPassword = "", "" }, []string{"bind_dn"}, "user_dn_template"},
		{"both binds", func(c *ldap.Config) { c.UserDNTemplate = "uid={username},dc=acme,dc=com" }, []string{"user_dn_template"}, "not both"},
		{"bad bind_dn", func(c *ldap.Config) { c.BindDN = "fedbroker" }, []string{"bind_dn"}, "not a DN"},
		{"no bind_password", func(c *ldap.Config) { c.BindPassword = "" }, []string{"bind_password"}, "${VAR}"},
		{"template without placeholder", func(c *ldap.Config) {
			c.BindDN, c.BindPassword, c.UserDNTemplate = "", "", "uid=alice,dc=acme,dc=com"
		}, []string{"user_dn_template"}, "{username}"},
		{"template not a DN", func(c *ldap.Config) {
			c.BindDN, c.BindPassword, c.UserDNTemplate, c.UserSearch = "", "", "{username}@acme.com", ldap.UserSearch{}
		}, []string{"user_dn_template"}, "user_search"},
		{"no user search base", func(c *ldap.Config) { c.UserSearch.BaseDN = "" }, []string{"user_search.base_dn"}, "required"},
		{"bad filter", func(c *ldap.Config) { c.UserSearch.Filter = "objectClass=person" }, []string{"user_search.filter"}, "parentheses"},
		{"bad scope", func(c *ldap.Config) { c.UserSearch.Scope = "subtree" }, []string{"user_search.scope"}, "sub, one or base"},
		{"no username_attr", func(c *ldap.Config) { c.UserSearch.UsernameAttr = "" }, []string{"user_search.username_attr"}, "sAMAccountName"},
		{"group search without base", func(c *ldap.Config) { c.GroupSearch.BaseDN = "" }, []string{"group_search.base_dn"}, "required"},
		{"bad user_matcher", func(c *ldap.Config) { c.GroupSearch.UserMatcher = "member" }, []string{"group_search.user_matcher"}, "GROUP_ATTR=USER_ATTR"},
		{"nested on uid", func(c *ldap.Config) { c.GroupSearch.UserMatcher, c.GroupSearch.Nested = "memberUid=uid", true }, []string{"group_search.nested"}, "member=dn"},
		{"bad attribute", func(c *ldap.Config) { c.EmailAttr = "mail)(x" }, []string{"email_attr"}, "not an attribute"},
		{"bad extra attribute", func(c *ldap.Config) { c.ExtraAttrs = []string{"ok", "no good"} }, []string{"extra_attrs[1]"}, "not an attribute"},
		{"objectGUID as string", func(c *ldap.Config) { c.IDAttr = "objectGUID" }, []string{"id_encoding"}, "binary"},
		{"bad id_encoding", func(c *ldap.Config) { c.IDEncoding = "base32" }, []string{"id_encoding"}, "base64 or hex"},
		{"timeout too short", func(c *ldap.Config) { c.Timeout = time.Millisecond }, []string{"timeout"}, "between"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := searchConfig("127.0.0.1:389")
			tt.change(c)
			ps := c.Validate()
			var paths []string
			for _, p := range ps {
				paths = append(paths, p.Path)
			}
			if !slices.Equal(paths, tt.paths) {
				t.Fatalf("problems %v, want paths %v", ps, tt.paths)
			}
			if len(ps) > 0 && !strings.Contains(ps[0].Message, tt.substr) {
				t.Errorf("message %q does not mention %q", ps[0].Message, tt.substr)
			}
		})
	}
}
