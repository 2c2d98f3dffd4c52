package authflow

import (
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/fedbroker/fedbroker/broker/oauth"
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
	return f.pages.Render(w, res.Status, res.Template, res.Data)
}

// HandleAuthorize serves GET and POST /authorize.
func (f *Flow) HandleAuthorize(c echo.Context) error {
	r := c.Request()
	if err := r.ParseForm(); err != nil {
		return oauth.BadRequestPage(oauth.ErrInvalidRequest, "The sign-in request is malformed.")
	}
	form := r.Form
	if r.Method == http.MethodGet {
		form = r.URL.Query()
	}
	res, err := f.Authorize(r.Context(), f.current(), form, f.cookies.Read(r))
	if err != nil {
		return err
	}
	return f.write(c.Response(), r, res)
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
		return err
	}
	return f.write(c.Response(), r, res)
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

// HandleLogout serves GET and POST /logout.
func (f *Flow) HandleLogout(c echo.Context) error {
	r := c.Request()
	r.Body = http.MaxBytesReader(c.Response(), r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		return oauth.BadRequestPage(oauth.ErrInvalidRequest, "The sign-out request is malformed.")
	}
	req := LogoutRequest{
		IDTokenHint:           r.Form.Get("id_token_hint"),
		PostLogoutRedirectURI: r.Form.Get("post_logout_redirect_uri"),
		State:                 r.Form.Get("state"),
		ClientID:              r.Form.Get("client_id"),
	}
	res, err := f.Logout(r.Context(), f.current(), req, f.cookies.Read(r))
	if err != nil {
		return err
	}
	return f.write(c.Response(), r, res)
}
