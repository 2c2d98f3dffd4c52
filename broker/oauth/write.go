package oauth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"

	"github.com/fedbroker/fedbroker/broker/storage"
	"github.com/fedbroker/fedbroker/templates"
)

// Writer writes every error and page the broker answers with. It is the one
// place an error becomes a response: anything that is not one of this
// package's error types is logged and answered as server_error without
// detail.
type Writer struct {
	// Issuer is the issuer URL, sent as `iss` with authorization errors.
	Issuer string
	// IssuerPath is the issuer's path prefix, for links in pages.
	IssuerPath string
	Templates  *templates.Templates
	Log        *slog.Logger
}

// Write answers err. machine selects JSON (token, introspection, userinfo,
// ...) over an HTML page for the errors that have both forms. It reports
// whether err was a storage outage, so callers can count those.
func (w *Writer) Write(rw http.ResponseWriter, r *http.Request, err error, machine bool) (storageDown bool) {
	var (
		oe *Error
		pe *PageError
		re *RedirectError
	)
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		// The client went away mid-request: nothing to answer, nothing to
		// count as a storage failure.
		w.Log.Debug("request cancelled by the client", "path", r.URL.Path)
		return false
	}
	switch {
	case errors.As(err, &re):
		w.WriteRedirect(rw, r, re)
	case errors.As(err, &oe):
		w.WriteJSON(rw, oe)
	case errors.As(err, &pe):
		if pe.Cause != nil {
			w.Log.Warn("request failed", "path", r.URL.Path, "code", pe.Code, "err", pe.Cause)
		}
		w.WritePage(rw, pe)
	case errors.Is(err, storage.ErrUnavailable):
		w.Log.Error("storage unavailable", "path", r.URL.Path, "err", err)
		if machine {
			rw.Header().Set("Retry-After", "5")
			w.WriteJSON(rw, NewError(http.StatusServiceUnavailable, ErrTemporarilyUnavailable, "the service is temporarily unavailable, try again shortly"))
		} else {
			w.WritePage(rw, &PageError{Status: http.StatusServiceUnavailable, Heading: "Temporarily unavailable", Message: "The sign-in service is temporarily unavailable. Please try again in a moment.", Code: ErrTemporarilyUnavailable})
		}
		return true
	default:
		w.Log.Error("internal error", "path", r.URL.Path, "err", err)
		if machine {
			w.WriteJSON(rw, NewError(http.StatusInternalServerError, ErrServerError, "internal error"))
			return false
		}
		w.WritePage(rw, &PageError{Status: http.StatusInternalServerError, Heading: "Something went wrong", Message: "The sign-in service hit an unexpected error. Please try again.", Code: ErrServerError})
	}
	return false
}

// noStore and noCache are the values NoStore sets, made once and shared
// by every response: one-element literals with no room to grow, so a
// handler that adds a value appends to a copy.
var noStore, noCache = []string{"no-store"}, []string{"no-cache"}

// NoStore marks a response that carries tokens or secrets as not to be
// cached (RFC 6749 §5.1): Cache-Control no-store, and Pragma no-cache for
// HTTP/1.0 caches.
func NoStore(h http.Header) {
	h["Cache-Control"] = noStore
	h["Pragma"] = noCache
}

// WriteJSON writes e as an RFC 6749 §5.2 error response.
func (w *Writer) WriteJSON(rw http.ResponseWriter, e *Error) {
	h := rw.Header()
	NoStore(h)
	if e.Status == http.StatusUnauthorized {
		switch {
		case e.BearerChallenge:
			h.Set("WWW-Authenticate", fmt.Sprintf(`Bearer error=%q, error_description=%q`, e.Code, e.Description))
		case e.BasicChallenge:
			h.Set("WWW-Authenticate", `Basic realm="fedbroker"`)
		}
	}
	body := map[string]string{"error": e.Code}
	if e.Description != "" {
		body["error_description"] = e.Description
	}
	if err := WriteJSON(rw, e.Status, body); err != nil {
		w.Log.Debug("write error response", "err", err)
	}
}

// WriteRedirect sends the browser back to the client with the error, its
// state and `iss`.
func (w *Writer) WriteRedirect(rw http.ResponseWriter, r *http.Request, e *RedirectError) {
	u, err := url.Parse(e.RedirectURI)
	if err != nil {
		w.WritePage(rw, BadRequestPage(ErrInvalidRequest, "The application's redirect address is not valid."))
		return
	}
	q := u.Query()
	q.Set("error", e.Code)
	if e.Description != "" {
		q.Set("error_description", e.Description)
	}
	if e.State != "" {
		q.Set("state", e.State)
	}
	q.Set("iss", w.Issuer)
	u.RawQuery = q.Encode()
	http.Redirect(rw, r, u.String(), RedirectStatus(r))
}

// WritePage renders the error page for a person.
func (w *Writer) WritePage(rw http.ResponseWriter, e *PageError) {
	status := e.Status
	if status == 0 {
		status = http.StatusBadRequest
	}
	data := templates.ErrorData{Page: w.Page(e.Heading), Heading: e.Heading, Message: e.Message, Code: e.Code}
	if err := w.Render(rw, status, "error.html", data); err != nil {
		w.Log.Error("render error page", "err", err)
	}
}

// Render writes one of the broker's HTML pages, never cached.
func (w *Writer) Render(rw http.ResponseWriter, status int, name string, data any) error {
	rw.Header().Set("Content-Type", "text/html; charset=utf-8")
	rw.Header().Set("Cache-Control", "no-store")
	rw.WriteHeader(status)
	return w.Templates.Render(rw, name, data)
}

// Page is the data every page shares.
func (w *Writer) Page(title string) templates.Page {
	return templates.Page{Title: title, Issuer: w.IssuerPath}
}

// RedirectStatus is 303 after a POST (so the browser does not post again)
// and 302 otherwise.
func RedirectStatus(r *http.Request) int {
	if r.Method == http.MethodPost {
		return http.StatusSeeOther
	}
	return http.StatusFound
}
