package admin

import (
	"net/http"
	"net/url"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/fedbroker/fedbroker/broker/storage"
)

// SessionView is one session in GET /admin/subjects/{sub}/sessions (and
// on the console's person page): identifiers and times, never the
// session's secret id or its sealed connector data.
type SessionView struct {
	SID             string    `json:"sid"`
	Connector       string    `json:"connector"`
	UpstreamSubject string    `json:"upstream_sub,omitempty"`
	UpstreamSID     string    `json:"upstream_sid,omitempty"`
	Created         time.Time `json:"created"`
	LastUsed        time.Time `json:"last_used,omitzero"`
	Expires         time.Time `json:"expires"`
	Clients         []string  `json:"clients"`
}

// ViewSession is what an admin may see of s.
func ViewSession(s storage.Session) SessionView {
	created := s.Created
	if created.IsZero() {
		created = s.AuthTime
	}
	clients := s.Clients
	if clients == nil {
		clients = []string{}
	}
	return SessionView{
		SID: s.PublicID, Connector: s.ConnectorID, UpstreamSubject: s.Grant.UpstreamSubject, UpstreamSID: s.UpstreamSID,
		Created: created, LastUsed: s.LastUsed, Expires: s.Expiry, Clients: clients,
	}
}

// subjectParam is the :sub path parameter, unescaped.
func subjectParam(c echo.Context) (string, error) {
	sub, err := url.PathUnescape(c.Param("sub"))
	if err != nil || sub == "" {
		return "", &apiError{http.StatusBadRequest, "malformed subject"}
	}
	return sub, nil
}

// handleSessions serves GET /admin/subjects/{sub}/sessions: the
// subject's live SSO sessions, oldest first.
func (a *api) handleSessions(c echo.Context) error {
	sub, err := subjectParam(c)
	if err != nil {
		return err
	}
	list, err := a.deps.Store.ListSessions(c.Request().Context(), sub)
	if err != nil {
		return err
	}
	out := make([]SessionView, 0, len(list))
	for _, s := range list {
		out = append(out, ViewSession(s))
	}
	return c.JSON(http.StatusOK, map[string]any{"sub": sub, "sessions": out})
}

// handleEndSessions serves DELETE /admin/subjects/{sub}/sessions (every
// session: sign the person out everywhere) and DELETE
// /admin/subjects/{sub}/sessions/{sid} (one): the sessions end, their
// refresh families and access tokens are revoked, and the applications
// they signed into are told by back-channel logout. Ending a session that
// is not there answers 404.
func (a *api) handleEndSessions(c echo.Context) error {
	sub, err := subjectParam(c)
	if err != nil {
		return err
	}
	sid := ""
	if c.Param("sid") != "" {
		if sid, err = url.PathUnescape(c.Param("sid")); err != nil || sid == "" {
			return &apiError{http.StatusBadRequest, "malformed session id"}
		}
	}
	ended, err := a.deps.Logout.End(c.Request().Context(), sub, sid, "admin")
	if err != nil {
		return err
	}
	a.deps.Audit.Event("admin_end_sessions", "sub", sub, "sid", sid, "sessions", len(ended.Sessions), "families", ended.Families, "backchannel", ended.Queued)
	if sid != "" && len(ended.Sessions) == 0 {
		return &apiError{http.StatusNotFound, "no such session"}
	}
	sids := make([]string, 0, len(ended.Sessions))
	for _, s := range ended.Sessions {
		sids = append(sids, s.PublicID)
	}
	return c.JSON(http.StatusOK, map[string]any{
		"sub": sub, "sessions_ended": sids, "refresh_families_revoked": ended.Families, "backchannel_logouts_queued": ended.Queued,
	})
}
