package google

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/jwt"

	"github.com/fedbroker/fedbroker/connectors"
	"github.com/fedbroker/fedbroker/connectors/oidc"
)

// maxPages bounds a Directory group listing (200 groups a page).
const maxPages = 50

// directory lists a user's groups with the Admin SDK Directory API.
type directory struct {
	sa                *jwt.Config // from the key file, by golang.org/x/oauth2/google
	admin             string
	baseURL, tokenURL string
	client            *http.Client
	ts                oauth2.TokenSource
}

// init builds the cached service-account token source on client: the
// JWT-bearer grant as the admin (domain-wide delegation).
func (d *directory) init(client *http.Client) {
	if d.baseURL == "" {
		d.baseURL = DefaultDirectoryURL
	}
	cfg := *d.sa
	cfg.Subject = d.admin
	if d.tokenURL != "" {
		cfg.TokenURL = d.tokenURL
	}
	d.client = client
	// The token source keeps this context for its token requests; the
	// client carries the timeout.
	d.ts = oauth2.ReuseTokenSource(nil, cfg.TokenSource(context.WithValue(context.Background(), oauth2.HTTPClient, client)))
}

// enrich puts the emails of the groups the signed-in user belongs to in
// id.Sources["groups"].
func (d *directory) enrich(ctx context.Context, _ *oauth2.Token, id *connectors.Identity) error {
	email, _ := id.Claims["email"].(string)
	if email == "" {
		return oidc.UserError(oidc.CodeInvalidResponse, "Google did not return your email address.", fmt.Errorf("google: no email claim for the groups lookup"))
	}
	groups, err := d.groups(ctx, email)
	if err != nil {
		code := oidc.CodeUpstreamError
		if errors.Is(err, connectors.ErrUnavailable) {
			code = oidc.CodeUnavailable
		}
		return oidc.UserError(code, "Your groups could not be read from Google.", err)
	}
	if id.Sources == nil {
		id.Sources = map[string]any{}
	}
	id.Sources["groups"] = groups
	return nil
}

// groups returns the emails of email's groups, following nextPageToken.
func (d *directory) groups(ctx context.Context, email string) ([]any, error) {
	tok, err := d.ts.Token()
	if err != nil {
		return nil, fmt.Errorf("google: service account token: %w", err)
	}
	groups := []any{}
	pageToken := ""
	for range maxPages {
		q := url.Values{"userKey": {email}, "maxResults": {"200"}}
		if pageToken != "" {
			q.Set("pageToken", pageToken)
		}
		u := strings.TrimSuffix(d.baseURL, "/") + "/admin/directory/v1/groups?" + q.Encode()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return nil, fmt.Errorf("google: groups request: %w", err)
		}
		tok.SetAuthHeader(req)
		var page struct {
			Groups []struct {
				Email string `json:"email"`
			} `json:"groups"`
			NextPageToken string `json:"nextPageToken"`
		}
		if err := getJSON(d.client, req, &page); err != nil {
			return nil, err
		}
		for _, g := range page.Groups {
			groups = append(groups, g.Email)
		}
		if page.NextPageToken == "" {
			return groups, nil
		}
		pageToken = page.NextPageToken
	}
	return nil, fmt.Errorf("google: more than %d pages of groups", maxPages)
}

func getJSON(client *http.Client, req *http.Request, v any) error {
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("google: directory: %w: %w", connectors.ErrUnavailable, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return fmt.Errorf("google: directory: %w: %w", connectors.ErrUnavailable, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("google: directory: status %d: %.200s", resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("google: directory: decode: %w", err)
	}
	return nil
}
