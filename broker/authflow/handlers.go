package authflow

import (
	"errors"
	"net/http"
	"net/url"
	"slices"

	"github.com/labstack/echo/v4"

	"github.com/fedbroker/fedbroker/broker/oauth"
	"github.com/fedbroker/fedbroker/templates"
)

// maxFormBytes caps every form the broker parses (login forms; SAML posts
// are capped again by their connector).
const maxFormBytes = 1 << 20

// write sends res to the browser: its cookies, then the redirect or page.
func (f *Flow) write(w http.ResponseWriter, r *http.Request, res Result) error {
	f.cookies.Write(w, res)
	if res.Redirect != "" {
		http.Redirect(w, r, res.Redirect, oauth.RedirectStatus(r))
		return nil
	}
	if len(res.FrameSources) > 0 {
		w.Header().Set("Content-Security-Policy", frameCSP(res.FrameSources))
	}
	return f.pages.Render(w, res.Status, res.Template, res.Data)
}

// frameCSP is the pages' Content-Security-Policy with frame-src allowing
// the origins of urls.
func frameCSP(urls []string) string {
	var origins []string
	for _, raw := range urls {
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
			continue
		}
		o := u.Scheme + "://" + u.Host
		if !slices.Contains(origins, o) {
			origins = append(origins, o)
		}
	}
	return oauth.PageCSP(origins...)
}

// fail writes an error page that offers ways on and back (a
// wayBackError) with its links; every other error goes back to echo's
// error handler, the one writer.
func (f *Flow) fail(w http.ResponseWriter, err error) error {
	wb, ok := errors.AsType[*wayBackError](err)
	if !ok {
		return err
	}
	pe := wb.page
	return f.pages.Render(w, pe.Status, "error.html", templates.ErrorData{
		Page: f.pages.Page(pe.Heading), Heading: pe.Heading, Message: pe.Message, Code: pe.Code,
		RetryURL: wb.retry, CancelURL: wb.cancelTo,
	})
}

// maxAuthorizeBytes caps the query and the body of a request to
// /authorize: no parameter it accepts is longer than a few KiB.
const maxAuthorizeBytes = 64 << 10

// Errors for an /authorize request too large to read.
var (
	errAuthorizeBodyTooLarge  = &oauth.PageError{Status: http.StatusRequestEntityTooLarge, Heading: "This sign-in request cannot be completed", Message: "The sign-in request is too large.", Code: oauth.ErrInvalidRequest}
	errAuthorizeQueryTooLarge = &oauth.PageError{Status: http.StatusRequestURITooLong, Heading: "This sign-in request cannot be completed", Message: "The sign-in request is too large.", Code: oauth.ErrInvalidRequest}
)

// HandleAuthorize serves GET and POST /authorize.
func (f *Flow) HandleAuthorize(c echo.Context) error {
	r := c.Request()
	form, b, err := f.readAuthorize(c)
	if err != nil {
		return err
	}
	res, err := f.Authorize(r.Context(), f.current(), form, b)
	if err != nil {
		return err
	}
	return f.write(c.Response(), r, res)
}

// readAuthorize reads a request to /authorize: its parameters (the query
// of a GET, the form of a POST), both capped, and the browser's cookies
// and address.
func (f *Flow) readAuthorize(c echo.Context) (url.Values, Browser, error) {
	r := c.Request()
	if len(r.URL.RawQuery) > maxAuthorizeBytes {
		return nil, Browser{}, errAuthorizeQueryTooLarge
	}
	r.Body = http.MaxBytesReader(c.Response(), r.Body, maxAuthorizeBytes)
	if err := r.ParseForm(); err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, Browser{}, errAuthorizeBodyTooLarge
		}
		return nil, Browser{}, oauth.BadRequestPage(oauth.ErrInvalidRequest, "The sign-in request is malformed.")
	}
	form := r.Form
	if r.Method == http.MethodGet {
		form = r.URL.Query()
	}
	b := f.cookies.Read(r)
	if b.RemoteIP = c.RealIP(); b.RemoteIP == "" {
		b.RemoteIP = unknownAddr
	}
	return form, b, nil
}

// HandleChooser serves GET /login.
func (f *Flow) HandleChooser(c echo.Context) error {
	r := c.Request()
	res, err := f.Chooser(r.Context(), f.current(), c.QueryParam("req"), f.cookies.Read(r))
	if err != nil {
		return err
	}
	return f.write(c.Response(), r, res)
}

// HandleLogin serves GET /login/{connector}.
func (f *Flow) HandleLogin(c echo.Context) error {
	r := c.Request()
	res, err := f.StartLogin(r.Context(), f.current(), c.Param("connector"), c.QueryParam("req"), f.cookies.Read(r))
	if err != nil {
		return err
	}
	return f.write(c.Response(), r, res)
}

// HandlePasswordLogin serves POST /login/{connector}.
func (f *Flow) HandlePasswordLogin(c echo.Context) error {
	r := c.Request()
	r.Body = http.MaxBytesReader(c.Response(), r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		return oauth.BadRequestPage(oauth.ErrInvalidRequest, "The sign-in form could not be read.")
	}
	form := PasswordForm{
		RequestID: r.PostForm.Get("req"),
		CSRF:      r.PostForm.Get("csrf"),
		Username:  r.PostForm.Get("login"),
		Password:  r.PostForm.Get("password"),
		RemoteIP:  c.RealIP(),
	}
	res, err := f.PasswordLogin(r.Context(), f.current(), c.Param("connector"), form, f.cookies.Read(r))
	if err != nil {
		return f.fail(c.Response(), err)
	}
	return f.write(c.Response(), r, res)
}

// HandleCancel serves GET /cancel?req=…&csrf=…, the Cancel link: back to
// the application with access_denied, written by echo's error handler like
// every authorization error. It is outside /login, where a connector could
// be called "cancel".
func (f *Flow) HandleCancel(c echo.Context) error {
	r := c.Request()
	if res, ok, err := f.cancelDevice(r.Context(), c.QueryParam("req"), c.QueryParam("csrf"), f.cookies.Read(r)); ok {
		if err != nil {
			return err
		}
		return f.write(c.Response(), r, res)
	}
	return f.Cancel(r.Context(), f.current(), c.QueryParam("req"), c.QueryParam("csrf"), f.cookies.Read(r))
}

// HandleCallback serves GET and POST /callback/{connector}.
func (f *Flow) HandleCallback(c echo.Context) error {
	r := c.Request()
	var state string
	if r.Method == http.MethodPost {
		// Connectors read the form themselves; only RelayState is needed
		// here. The body is capped here and again by the connector.
		r.Body = http.MaxBytesReader(c.Response(), r.Body, maxFormBytes*4)
		if err := r.ParseForm(); err != nil {
			return oauth.BadRequestPage(oauth.ErrInvalidRequest, "The response from the sign-in provider is too large or malformed.")
		}
		state = r.PostForm.Get("RelayState")
	} else {
		state = r.URL.Query().Get("state")
	}
	res, err := f.Callback(r.Context(), f.current(), c.Param("connector"), state, r, f.cookies.Read(r))
	if err != nil {
		return err
	}
	return f.write(c.Response(), r, res)
}

// HandleMetadata serves GET /saml/{connector}/metadata.
func (f *Flow) HandleMetadata(c echo.Context) error {
	ct, body, err := f.Metadata(c.Request().Context(), f.current(), c.Param("connector"))
	if errors.Is(err, ErrNoMetadata) {
		return echo.ErrNotFound
	}
	if err != nil {
		return err
	}
	return c.Blob(http.StatusOK, ct, body)
}
