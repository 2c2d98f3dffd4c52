package admin

import (
	"net/http"

	"github.com/labstack/echo/v4"
)

// StorageStatus is the storage part of GET /admin/status.
type StorageStatus struct {
	Type string `json:"type"` // memory | sqlite | redis | postgres
	// Durability is what a storage crash would cost: for Redis as it
	// reported its persistence when the broker started; nil for the
	// memory store.
	Durability *Durability `json:"durability,omitempty"`
}

// Durability is the storage's persistence: Mode is aof, rdb, none or
// unknown for Redis, sqlite or postgres for the SQL stores; Loss says in
// words what a restart or crash would lose.
type Durability struct {
	Mode string `json:"mode"`
	Loss string `json:"loss"`
}

// handleStatus answers GET /admin/status:
//
//	{"storage": {"type": "redis", "durability": {"mode": "aof", "loss": "..."}}}
func (a *api) handleStatus(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]any{"storage": a.deps.Storage})
}
