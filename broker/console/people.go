package console

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/fedbroker/fedbroker/broker/admin"
	"github.com/fedbroker/fedbroker/broker/observe"
	"github.com/fedbroker/fedbroker/broker/storage"
)

// personHit is one person found by the search: their internal subject
// and the identities linked to it that matched or exist.
type personHit struct {
	Subject string
	Links   []storage.Link
}

// peopleData fills people.html.
type peopleData struct {
	Query string
	Hits  []personHit
	// Searched is false before anything was asked.
	Searched bool
}

// handlePeople searches people by internal subject, email (or another
// link key) or upstream identity (connector subject), case-insensitive,
// in the identity links; a subject without links is found by its exact
// subject when it has a live session or recent audit events.
func (c *Console) handlePeople(ec echo.Context) error {
	q := strings.TrimSpace(ec.QueryParam("q"))
	d := peopleData{Query: q}
	if q != "" {
		d.Searched = true
		hits, err := c.search(ec, q)
		if err != nil {
			return err
		}
		d.Hits = hits
	}
	return c.render(ec.Response(), ec.Request(), http.StatusOK, "people.html", d)
}

func (c *Console) search(ec echo.Context, q string) ([]personHit, error) {
	ctx := ec.Request().Context()
	links, err := c.deps.Store.ListLinks(ctx)
	if err != nil {
		return nil, err
	}
	lq := strings.ToLower(q)
	bySub := make(map[string]*personHit)
	for _, l := range links {
		if strings.Contains(strings.ToLower(l.Subject), lq) || strings.Contains(strings.ToLower(l.Key), lq) ||
			strings.Contains(strings.ToLower(l.UpstreamSubject), lq) ||
			strings.EqualFold(l.ConnectorID+":"+l.UpstreamSubject, q) {
			if bySub[l.Subject] == nil {
				bySub[l.Subject] = &personHit{Subject: l.Subject}
			}
		}
	}
	if bySub[q] == nil {
		sessions, err := c.deps.Store.ListSessions(ctx, q)
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			return nil, err
		}
		if len(sessions) > 0 || len(c.auditFor(q, 1)) > 0 {
			bySub[q] = &personHit{Subject: q}
		}
	}
	for _, l := range links {
		if h := bySub[l.Subject]; h != nil {
			h.Links = append(h.Links, l)
		}
	}
	out := make([]personHit, 0, len(bySub))
	for _, h := range bySub {
		out = append(out, *h)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Subject < out[j].Subject })
	return out, nil
}

// auditFor returns up to n recent audit records about subject.
func (c *Console) auditFor(subject string, n int) []observe.AuditRecord {
	if c.deps.AuditRing == nil {
		return nil
	}
	var out []observe.AuditRecord
	for _, r := range c.deps.AuditRing.Recent() {
		if r.Get("sub") == subject || r.Get("subject") == subject {
			out = append(out, r)
			if len(out) == n {
				break
			}
		}
	}
	return out
}

// personData fills person.html.
type personData struct {
	Subject  string
	Links    []storage.Link
	Sessions []sessionView
	Audit    []auditRow
	// Message reports the action just taken.
	Message string
}

// sessionView is one session with the claims its sign-in put in the
// person's tokens (what the mapping produced), for finding out why a
// claim is missing.
type sessionView struct {
	admin.SessionView
	Claims []setting
	// WorkbenchURL opens the mapping workbench for the session's
	// connector.
	WorkbenchURL string
}

func (c *Console) handlePerson(ec echo.Context) error {
	sub := ec.QueryParam("sub")
	if sub == "" {
		return ec.Redirect(http.StatusSeeOther, Prefix+"/people")
	}
	return c.renderPerson(ec, sub, http.StatusOK, "")
}

func (c *Console) renderPerson(ec echo.Context, sub string, status int, message string) error {
	ctx := ec.Request().Context()
	links, err := c.deps.Store.ListLinks(ctx)
	if err != nil {
		return err
	}
	d := personData{Subject: sub, Message: message}
	for _, l := range links {
		if l.Subject == sub {
			d.Links = append(d.Links, l)
		}
	}
	sessions, err := c.deps.Store.ListSessions(ctx, sub)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return err
	}
	for _, s := range sessions {
		v := sessionView{SessionView: admin.ViewSession(s)}
		v.Claims = claimSettings(s.Grant.IDTokenClaims)
		v.WorkbenchURL = Prefix + "/workbench?" + url.Values{"connector": {s.ConnectorID}, "sub": {sub}}.Encode()
		d.Sessions = append(d.Sessions, v)
	}
	for _, r := range c.auditFor(sub, 50) {
		d.Audit = append(d.Audit, rowOf(r))
	}
	return c.render(ec.Response(), ec.Request(), status, "person.html", d)
}

// claimSettings lists a token's claims as text, sensitive-looking names
// masked as in configurations.
func claimSettings(claims map[string]any) []setting {
	keys := make([]string, 0, len(claims))
	for k := range claims {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([]setting, 0, len(keys))
	for _, k := range keys {
		if sensitive(k) {
			out = append(out, setting{k, setOrNot(claims[k] != nil)})
			continue
		}
		b, err := json.Marshal(claims[k])
		if err != nil {
			continue
		}
		out = append(out, setting{k, string(b)})
	}
	return out
}

// confirmed reports whether the form's confirmation box was ticked.
func confirmed(ec echo.Context) bool { return ec.FormValue("confirm") == "yes" }

// handleSignOut ends one session (sid) or all of a person's sessions,
// as DELETE /admin/subjects/{sub}/sessions[/{sid}] does: refresh
// families and access tokens revoked, applications told by back-channel
// logout.
func (c *Console) handleSignOut(ec echo.Context) error {
	sub, sid := ec.FormValue("sub"), ec.FormValue("sid")
	if sub == "" {
		return c.fail(ec, http.StatusBadRequest, "No person named", "The form did not say whose sessions to end.")
	}
	if !confirmed(ec) {
		return c.renderPerson(ec, sub, http.StatusBadRequest, "Nothing was done: tick the confirmation box first.")
	}
	if c.deps.Logout == nil {
		return c.fail(ec, http.StatusNotImplemented, "Not available", "Single logout is not wired into this console.")
	}
	ended, err := c.deps.Logout.End(ec.Request().Context(), sub, sid, c.by(ec.Request()))
	if err != nil {
		return err
	}
	c.auditAdmin(ec.Request(), "admin_end_sessions", "sub", sub, "sid", sid, "sessions", len(ended.Sessions), "families", ended.Families, "backchannel", ended.Queued)
	msg := "Ended " + plural(len(ended.Sessions), "session") + "; the applications were told."
	if sid != "" && len(ended.Sessions) == 0 {
		msg = "That session had already ended."
	}
	return c.renderPerson(ec, sub, http.StatusOK, msg)
}

// handleUnlink deletes one identity link (DELETE /admin/links/{key}).
func (c *Console) handleUnlink(ec echo.Context) error {
	key, sub := ec.FormValue("key"), ec.FormValue("sub")
	if key == "" {
		return c.fail(ec, http.StatusBadRequest, "No link named", "The form did not say which link to remove.")
	}
	back := func(status int, msg string) error {
		if sub != "" {
			return c.renderPerson(ec, sub, status, msg)
		}
		return c.renderActions(ec, status, msg)
	}
	if !confirmed(ec) {
		return back(http.StatusBadRequest, "Nothing was done: tick the confirmation box first.")
	}
	err := c.deps.Store.DeleteLink(ec.Request().Context(), key)
	if errors.Is(err, storage.ErrNotFound) {
		return back(http.StatusNotFound, "There is no link with that key (already removed?).")
	}
	if err != nil {
		return err
	}
	c.auditAdmin(ec.Request(), "admin_unlink", "key", key, "sub", sub)
	return back(http.StatusOK, "Link removed: the next sign-in with that identity links it again as the configuration says.")
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return strconv.Itoa(n) + " " + word + "s"
}
