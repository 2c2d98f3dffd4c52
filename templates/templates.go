// Package templates holds the broker's HTML pages and static assets, embedded
// in the binary. Pages use no external assets and no inline scripts, so the
// broker can serve them under a strict Content-Security-Policy.
package templates

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"sync"
)

//go:embed html/*.html
var pages embed.FS

//go:embed static
var static embed.FS

// Static returns the static assets (CSS, the auto-post script), served under
// /static/.
func Static() fs.FS {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		// The embed directive guarantees the directory exists.
		panic(err)
	}
	return sub
}

// Templates renders the broker's pages.
type Templates struct {
	t *template.Template
}

// New parses every embedded page.
func New() (*Templates, error) {
	t, err := template.New("").ParseFS(pages, "html/*.html")
	if err != nil {
		return nil, fmt.Errorf("templates: parse: %w", err)
	}
	return &Templates{t: t}, nil
}

// Page is the data shared by every page.
type Page struct {
	Title  string
	Issuer string
}

// Connector is one entry of the chooser.
type Connector struct {
	Name string
	URL  string
}

// ChooserData fills chooser.html.
type ChooserData struct {
	Page
	ClientName string
	Connectors []Connector
	// CancelURL gives up the sign-in and returns to the application.
	CancelURL string
}

// PasswordData fills password.html.
type PasswordData struct {
	Page
	// ClientName is the application the person signs in to.
	ClientName    string
	ConnectorName string
	Action        string
	Prompt        string
	Username      string
	CSRF          string
	RequestID     string
	Invalid       bool
	// BackURL leads back to the chooser; CancelURL gives up the sign-in
	// and returns to the application.
	BackURL   string
	CancelURL string
}

// ErrorData fills error.html. Message is shown to the person; it must never
// contain internal detail.
type ErrorData struct {
	Page
	Heading string
	Message string
	Code    string
	// RetryURL and CancelURL, when set, are the ways on and back that a
	// sign-in still in progress offers: try again, or give up and return
	// to the application. Without them the page tells the person to go
	// back to the application.
	RetryURL  string
	CancelURL string
}

// PostData fills post.html: a form the browser posts on to another site
// (SAML HTTP-POST binding).
type PostData struct {
	Page
	Action string
	Fields map[string]string
	// CancelURL, shown when the form does not post itself (no
	// JavaScript), gives up the sign-in.
	CancelURL string
}

// LoggedOutData fills logged_out.html: FrontChannel are the applications'
// front-channel logout URLs, loaded in hidden iframes; Continue, when set,
// is where the person goes next (the application's
// post_logout_redirect_uri), linked and, with Refresh, followed after a
// moment; Note is a remark (an upstream that could not sign them out).
type LoggedOutData struct {
	Page
	FrontChannel []string
	Continue     string
	Note         string
}

// LogoutConfirmData fills logout_confirm.html. Without Relay it asks the
// person whether to sign out: a form that posts CSRF and Fields (the
// sign-out request's parameters) back to Action. With Relay it posts
// Fields on to Action at once (auto-post script, or a button), from the
// broker's own origin.
type LogoutConfirmData struct {
	Page
	Action string
	CSRF   string
	Fields map[string]string
	Relay  bool
}

// RootData fills root.html, the page at the issuer URL: what the service
// is, for people who land there, and its endpoints, for developers and
// admins.
type RootData struct {
	Page
	// Name is what the service is called on the page (the issuer's host
	// and path).
	Name         string
	IssuerURL    string
	DiscoveryURL string
	JWKSURL      string
	// AdminEnabled says the admin API is on; AdminURL is its listener,
	// set only when that is a loopback address (a remote admin listener's
	// address is not published).
	AdminEnabled bool
	AdminURL     string
}

// DeviceData fills device.html, the verification page of the device
// authorization grant: a form for the user code (with Error about the
// last one entered) or, with Confirm, what the device asks for and the
// buttons to confirm or deny it.
type DeviceData struct {
	Page
	Action   string
	UserCode string
	Error    string
	Confirm  bool
	// ClientName and Scopes are what the device asks for; CSRF binds the
	// confirm form to the browser and the code.
	ClientName string
	Scopes     []string
	CSRF       string
}

// DeviceDoneData fills device_done.html: the device was approved (signed
// in) or denied.
type DeviceDoneData struct {
	Page
	Approved   bool
	ClientName string
}

// buffers are reused by Render: a page is a few KiB, rendered on most
// steps of a sign-in.
var buffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// maxPooledBuffer is the largest buffer Render keeps for reuse.
const maxPooledBuffer = 64 << 10

// Render writes the named page ("chooser.html", ...) to w. The page is
// rendered into a buffer first so a template error never leaves half a page.
func (t *Templates) Render(w io.Writer, name string, data any) error {
	buf := buffers.Get().(*bytes.Buffer)
	buf.Reset()
	defer func() {
		if buf.Cap() <= maxPooledBuffer {
			buffers.Put(buf)
		}
	}()
	if err := t.t.ExecuteTemplate(buf, name, data); err != nil {
		return fmt.Errorf("templates: render %s: %w", name, err)
	}
	_, err := buf.WriteTo(w)
	return err
}
