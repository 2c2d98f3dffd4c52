package connectors_test

import (
	"context"
	"go/parser"
	"go/token"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/fedbroker/fedbroker/connectors"
)

type callback struct{}

func (callback) LoginURL(context.Context, connectors.Scopes, string, string) (string, []byte, error) {
	return "", nil, nil
}

func (callback) HandleCallback(context.Context, connectors.Scopes, []byte, *http.Request) (connectors.Identity, error) {
	return connectors.Identity{}, nil
}

type password struct{}

func (password) Prompt() string { return "Username" }

func (password) Login(context.Context, connectors.Scopes, string, string) (connectors.Identity, bool, error) {
	return connectors.Identity{}, false, nil
}

type post struct{}

func (post) LoginRequest(context.Context, connectors.Scopes, string, string) (connectors.LoginRequest, []byte, error) {
	return connectors.LoginRequest{}, nil, nil
}

func (post) HandlePOST(context.Context, connectors.Scopes, []byte, *http.Request) (connectors.Identity, error) {
	return connectors.Identity{}, nil
}

// refreshOnly has a capability but no way to sign anyone in.
type refreshOnly struct{}

func (refreshOnly) Refresh(_ context.Context, _ connectors.Scopes, id connectors.Identity) (connectors.Identity, error) {
	return id, nil
}

// both could be driven two ways; the broker cannot tell which.
type both struct {
	callback
	post
}

func TestSignInKind(t *testing.T) {
	tests := []struct {
		name    string
		c       connectors.Connector
		want    string
		wantErr bool
	}{
		{"callback", callback{}, connectors.KindCallback, false},
		{"password", password{}, connectors.KindPassword, false},
		{"post", post{}, connectors.KindPOST, false},
		{"pointer", &password{}, connectors.KindPassword, false},
		{"none", refreshOnly{}, "", true},
		{"nil", nil, "", true},
		{"two", both{}, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := connectors.SignInKind(tt.c)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("SignInKind(%T) = %q, %v; want %q, error %v", tt.c, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

// TestImportsStayLight checks that the contract package imports only the
// standard library and package problem.
func TestImportsStayLight(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			first, _, _ := strings.Cut(p, "/")
			if strings.Contains(first, ".") && p != "github.com/fedbroker/fedbroker/problem" {
				t.Errorf("%s imports %s; the contract package may import only the standard library and problem", name, p)
			}
		}
	}
}
