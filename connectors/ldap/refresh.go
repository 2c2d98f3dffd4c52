package ldap

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	goldap "github.com/go-ldap/ldap/v3"

	"github.com/fedbroker/fedbroker/connectors"
)

var _ connectors.RefreshConnector = (*Connector)(nil)

// refreshState is the ConnectorData of a search-then-bind sign-in: what
// Refresh searches for again.
type refreshState struct {
	DN       string `json:"dn"`
	Username string `json:"u"`
}

// connectorData is the Identity's ConnectorData: set only with a service
// account, which Refresh needs to read the directory without the user's
// password.
func (c *Connector) connectorData(dn, username string) []byte {
	if c.cfg.BindDN == "" {
		return nil
	}
	b, err := json.Marshal(refreshState{DN: dn, Username: username})
	if err != nil {
		return nil
	}
	return b
}

// Refresh searches for the user again with the service account, so that a
// user removed from the directory, renamed, or excluded by
// user_search.filter (a disabled account) can no longer refresh, and the
// claims (groups included) are read afresh. The password is not checked.
// Sign-ins by direct bind carry no ConnectorData and are not refreshed
// upstream.
func (c *Connector) Refresh(ctx context.Context, _ connectors.Scopes, id connectors.Identity) (connectors.Identity, error) {
	var st refreshState
	if err := json.Unmarshal(id.ConnectorData, &st); err != nil || st.DN == "" || st.Username == "" {
		return connectors.Identity{}, refused("the refresh state is unreadable", err)
	}
	if c.cfg.BindDN == "" {
		return connectors.Identity{}, refused("the connector has no service account to check the user with", nil)
	}
	var entry *goldap.Entry
	s, err := c.withService(ctx, "user search", func(s *session) (err error) {
		entry, err = c.findUser(s, st.Username)
		return err
	})
	if err != nil {
		return connectors.Identity{}, err
	}
	// Only bind_dn binds here: the connection goes back to the pool
	// unless an operation failed.
	kept := true
	defer func() { c.release(s, kept) }()
	if entry == nil {
		return connectors.Identity{}, refused(fmt.Sprintf("user %q is no longer found by user_search", st.Username), nil)
	}
	if entry.DN != st.DN {
		return connectors.Identity{}, refused(fmt.Sprintf("user %q is now %q, not %q", st.Username, entry.DN, st.DN), nil)
	}
	groups, err := c.groups(s, entry)
	if err != nil {
		kept = false
		return connectors.Identity{}, c.failure("group search", err)
	}
	fresh, err := c.identity(entry, st.Username, groups)
	if err != nil {
		return connectors.Identity{}, c.failure("user entry", err)
	}
	if id.Subject != "" && fresh.Subject != id.Subject {
		return connectors.Identity{}, refused("the user's id_attr changed", nil)
	}
	return fresh, nil
}

// CodeRefreshDenied is the code of a refresh the directory no longer allows.
const CodeRefreshDenied = "refresh_denied"

func refused(msg string, err error) error {
	cause := errors.New("ldap: " + msg)
	if err != nil {
		cause = fmt.Errorf("%w: %w", cause, err)
	}
	return &connectors.UserError{Code: CodeRefreshDenied, Message: "Your directory account can no longer be used here; sign in again.",
		Err: fmt.Errorf("%w: %w", connectors.ErrRefused, cause)}
}
