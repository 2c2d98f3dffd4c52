package azuread

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/fedbroker/fedbroker/connectors"
	"github.com/fedbroker/fedbroker/connectors/oidc"
)

// maxGraphPages bounds one transitiveMemberOf listing.
const maxGraphPages = 100

// graph reads a user's groups from Microsoft Graph with the user's own
// (delegated) access token.
type graph struct {
	baseURL string
	names   bool
	timeout time.Duration
	client  *http.Client
}

func (g *graph) init(client *http.Client) {
	if g.baseURL == "" {
		g.baseURL = DefaultGraphURL
	}
	g.baseURL = strings.TrimSuffix(g.baseURL, "/")
	if g.timeout == 0 {
		g.timeout = oidc.DefaultTimeout
	}
	g.client = client
}

// enrich sets id.Sources["groups"]: the token's groups claim when it is
// complete and ids are wanted, else the Graph listing.
func (g *graph) enrich(ctx context.Context, tok *oauth2.Token, id *connectors.Identity) error {
	groups, complete := tokenGroups(id.Claims)
	if !complete || g.names {
		oid, _ := id.Claims["oid"].(string)
		var err error
		if groups, err = g.memberOf(ctx, tok.AccessToken, oid); err != nil {
			code := CodeGroupsFailed
			if errors.Is(err, connectors.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) {
				code = oidc.CodeUnavailable
			}
			if code == CodeGroupsFailed {
				err = fmt.Errorf("%w: %w", connectors.ErrUpstream, err)
			}
			return oidc.UserError(code, "Your groups could not be read from Microsoft. Please try again later.", err)
		}
	}
	if id.Sources == nil {
		id.Sources = map[string]any{}
	}
	id.Sources["groups"] = groups
	return nil
}

// memberOf lists the groups oid is a transitive member of, following
// @odata.nextLink, within one timeout for all pages. Directory roles and
// other non-group objects are skipped. A nextLink that leaves the Graph
// base URL is refused, so the bearer token never goes elsewhere.
func (g *graph) memberOf(ctx context.Context, accessToken, oid string) ([]any, error) {
	if accessToken == "" || oid == "" {
		return nil, fmt.Errorf("azuread: graph: no access token or oid")
	}
	ctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	next := g.baseURL + "/v1.0/users/" + url.PathEscape(oid) + "/transitiveMemberOf?" +
		url.Values{"$select": {"id,displayName"}, "$top": {"999"}}.Encode()
	groups := []any{}
	for range maxGraphPages {
		var page struct {
			Value []struct {
				Type        string `json:"@odata.type"`
				ID          string `json:"id"`
				DisplayName string `json:"displayName"`
			} `json:"value"`
			NextLink string `json:"@odata.nextLink"`
		}
		if err := g.get(ctx, accessToken, next, &page); err != nil {
			return nil, err
		}
		for _, v := range page.Value {
			if v.Type != "#microsoft.graph.group" {
				continue
			}
			if g.names {
				groups = append(groups, v.DisplayName)
			} else {
				groups = append(groups, v.ID)
			}
		}
		if page.NextLink == "" {
			return groups, nil
		}
		if !strings.HasPrefix(page.NextLink, g.baseURL+"/") {
			return nil, fmt.Errorf("azuread: graph: nextLink %q leaves %s", page.NextLink, g.baseURL)
		}
		next = page.NextLink
	}
	return nil, fmt.Errorf("azuread: graph: more than %d pages of groups", maxGraphPages)
}

func (g *graph) get(ctx context.Context, accessToken, u string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("azuread: graph request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+accessToken)
	req.Header.Set("Accept", "application/json")
	resp, err := g.client.Do(req)
	if err != nil {
		return fmt.Errorf("azuread: graph: %w: %w", connectors.ErrUnavailable, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return fmt.Errorf("azuread: graph: %w: %w", connectors.ErrUnavailable, err)
	}
	switch {
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= http.StatusInternalServerError:
		return fmt.Errorf("azuread: graph: %w: status %d", connectors.ErrUnavailable, resp.StatusCode)
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("azuread: graph: status %d: %.300s", resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("azuread: graph: decode: %w", err)
	}
	return nil
}
