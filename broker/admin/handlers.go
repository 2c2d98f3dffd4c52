package admin

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/keys"
	"github.com/fedbroker/fedbroker/broker/observe"
	"github.com/fedbroker/fedbroker/broker/runtime"
	"github.com/fedbroker/fedbroker/broker/storage"
	"github.com/fedbroker/fedbroker/connectors"
)

// ConnectorStatus is one connector as GET /admin/connectors reports it.
type ConnectorStatus struct {
	ID        string               `json:"id"`
	Type      string               `json:"type"`
	Name      string               `json:"name"`
	Health    observe.HealthRecord `json:"health"`
	Reachable *bool                `json:"reachable,omitempty"`
	Problem   string               `json:"problem,omitempty"`
	Warnings  []string             `json:"warnings,omitempty"`
}

// Connectors reports every connector with its recent health and, for those
// that can probe their upstream (or were not reachable when loaded),
// whether the upstream answers now.
func Connectors(ctx context.Context, rt *runtime.Runtime, health *observe.Health) []ConnectorStatus {
	conns := rt.Connectors()
	out := make([]ConnectorStatus, len(conns))
	var wg sync.WaitGroup
	for i, conn := range conns {
		out[i] = ConnectorStatus{ID: conn.ID, Type: conn.Type, Name: conn.Name, Health: health.Get(conn.ID)}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			impl, err := conn.Open(ctx)
			if sr, ok := impl.(connectors.StatusReporter); ok && err == nil {
				out[i].Warnings = sr.Warnings()
			}
			if err == nil {
				hc, ok := impl.(connectors.HealthChecker)
				if !ok {
					return
				}
				err = hc.CheckHealth(ctx)
			}
			reachable := err == nil
			out[i].Reachable = &reachable
			if err != nil {
				out[i].Problem = err.Error()
			}
		}()
	}
	wg.Wait()
	return out
}

func (a *api) handleConnectors(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]any{"connectors": Connectors(c.Request().Context(), a.deps.Runtime(), a.deps.Health)})
}

func (a *api) handleMappingTest(c echo.Context) error {
	var in runtime.MappingInput
	dec := json.NewDecoder(http.MaxBytesReader(c.Response(), c.Request().Body, 1<<20))
	if err := dec.Decode(&in); err != nil {
		return &apiError{http.StatusBadRequest, "body must be JSON: {\"connector\": ID, \"claims\": {...}}"}
	}
	rt := a.deps.Runtime()
	explain := c.QueryParam("explain") == "true"
	var rep runtime.MappingReport
	if in.Workload {
		w, ok := rt.Workload(in.Connector)
		if !ok {
			return &apiError{http.StatusNotFound, "no workload issuer " + in.Connector}
		}
		rep = runtime.RunMapping(c.Request().Context(), w.Mapping, "workload", in, explain)
	} else {
		conn, ok := rt.Connector(in.Connector)
		if !ok {
			return &apiError{http.StatusNotFound, "no connector " + in.Connector}
		}
		rep = runtime.RunMapping(c.Request().Context(), conn.Mapping, conn.Type, in, explain)
	}
	a.deps.Audit.Event("admin_mapping_test", "connector", in.Connector, "decision", rep.Decision)
	return c.JSON(http.StatusOK, rep)
}

// reloadResponse is the answer to a reload that was not refused. Both
// lists are always present; they carry paths, never values.
type reloadResponse struct {
	Status          string          `json:"status"` // no changes | reloaded | restart required
	Applied         []config.Change `json:"applied"`
	RestartRequired []config.Change `json:"restart_required"`
}

// Reloader returns the reload these options offer: ReloadWithReport, or
// Reload with an empty report; nil when neither is set. The admin API and
// the console both reload through it.
func (o Options) Reloader() func(ctx context.Context) (config.ReloadReport, error) {
	if o.ReloadWithReport != nil {
		return o.ReloadWithReport
	}
	if o.Reload == nil {
		return nil
	}
	return func(ctx context.Context) (config.ReloadReport, error) {
		return config.ReloadReport{}, o.Reload(ctx)
	}
}

func (a *api) handleReload(c echo.Context) error {
	reload := a.opts.Reloader()
	if reload == nil {
		return &apiError{http.StatusNotImplemented, "reload is not available"}
	}
	rep, err := reload(c.Request().Context())
	if err != nil {
		a.deps.Audit.Event("admin_reload", "outcome", "refused")
		return c.JSON(http.StatusUnprocessableEntity, map[string]any{"error": "configuration refused; the previous one keeps serving", "problems": strings.Split(err.Error(), "\n")})
	}
	resp := reloadResponse{Status: rep.Status(), Applied: rep.Applied, RestartRequired: rep.RestartRequired}
	if a.opts.ReloadWithReport == nil {
		resp.Status = "reloaded" // the older Reload says nothing about changes
	}
	if resp.Applied == nil {
		resp.Applied = []config.Change{}
	}
	if resp.RestartRequired == nil {
		resp.RestartRequired = []config.Change{}
	}
	a.deps.Audit.Event("admin_reload", "outcome", "applied", "status", resp.Status,
		"applied", resp.Applied, "restart_required", resp.RestartRequired)
	return c.JSON(http.StatusOK, resp)
}

// handleRotate answers what the rotation did: 200 rotated, or 409
// already_rotated when another replica rotated since this one last loaded
// the keys (two operators, or one retrying on another replica). Both carry
// the key set's generation as version; the audit line records the outcome.
func (a *api) handleRotate(c echo.Context) error {
	r, err := a.deps.Keys.Rotate(c.Request().Context())
	switch {
	case errors.Is(err, keys.ErrStatic):
		return &apiError{http.StatusConflict, "signing keys are static (signing.static_keys): rotate them yourself"}
	case errors.Is(err, keys.ErrBusy):
		c.Response().Header().Set("Retry-After", "5")
		return &apiError{http.StatusServiceUnavailable, "the key set is being changed by another replica; try again"}
	case errors.Is(err, keys.ErrNotReady):
		a.deps.Logger.Error("admin: rotation refused", "err", err)
		return &apiError{http.StatusServiceUnavailable, "this replica cannot use the signing keys; see its log"}
	case err != nil:
		return err
	}
	if !r.Rotated {
		a.deps.Audit.Event("admin_rotate_keys", "outcome", "already_rotated", "version", r.Generation)
		return c.JSON(http.StatusConflict, map[string]any{"error": "already_rotated", "version": r.Generation})
	}
	a.deps.Audit.Event("admin_rotate_keys", "outcome", "rotated", "version", r.Generation)
	return c.JSON(http.StatusOK, map[string]any{"status": "rotated", "version": r.Generation})
}

func (a *api) handleRevokeSubject(c echo.Context) error {
	sub, err := url.PathUnescape(c.Param("sub"))
	if err != nil || sub == "" {
		return &apiError{http.StatusBadRequest, "malformed subject"}
	}
	// The same as ending every session (handleEndSessions): the
	// applications are told too.
	ended, err := a.deps.Logout.End(c.Request().Context(), sub, "", "admin")
	if err != nil {
		return err
	}
	a.deps.Audit.Event("admin_revoke_subject", "sub", sub, "families", ended.Families, "sessions", len(ended.Sessions), "backchannel", ended.Queued)
	return c.JSON(http.StatusOK, map[string]any{"sub": sub, "refresh_families_revoked": ended.Families, "sessions_ended": len(ended.Sessions)})
}

func (a *api) handleLinks(c echo.Context) error {
	links, err := a.deps.Store.ListLinks(c.Request().Context())
	if err != nil {
		return err
	}
	if sub := c.QueryParam("sub"); sub != "" {
		kept := links[:0]
		for _, l := range links {
			if l.Subject == sub {
				kept = append(kept, l)
			}
		}
		links = kept
	}
	if links == nil {
		links = []storage.Link{}
	}
	return c.JSON(http.StatusOK, map[string]any{"links": links})
}

func (a *api) handleUnlink(c echo.Context) error {
	key, err := url.PathUnescape(c.Param("key"))
	if err != nil {
		return &apiError{http.StatusBadRequest, "malformed link key"}
	}
	err = a.deps.Store.DeleteLink(c.Request().Context(), key)
	if errors.Is(err, storage.ErrNotFound) {
		return &apiError{http.StatusNotFound, "no link with that key"}
	}
	if err != nil {
		return err
	}
	a.deps.Audit.Event("admin_unlink", "key", key)
	return c.NoContent(http.StatusNoContent)
}
