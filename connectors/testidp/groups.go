package testidp

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// DirectoryScope is the scope a service account must ask for to list
// groups at the Directory endpoint.
const DirectoryScope = "https://www.googleapis.com/auth/admin.directory.group.readonly"

// jwtBearer serves the RFC 7523 JWT-bearer grant for registered service
// accounts (Google style: iss is the account email, aud the token URL).
func (p *IdP) jwtBearer(w http.ResponseWriter, r *http.Request) {
	tok, err := jwt.ParseSigned(r.PostForm.Get("assertion"), []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_grant", "malformed assertion")
		return
	}
	var unverified struct {
		Iss string `json:"iss"`
	}
	if err := tok.UnsafeClaimsWithoutVerification(&unverified); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_grant", "malformed assertion")
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	pub, ok := p.sa[unverified.Iss]
	if !ok {
		oauthError(w, http.StatusBadRequest, "invalid_grant", "unknown service account")
		return
	}
	var claims struct {
		jwt.Claims
		Scope string `json:"scope"`
	}
	if err := tok.Claims(pub, &claims); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_grant", "bad signature")
		return
	}
	now := p.opts.Now()
	if err := claims.ValidateWithLeeway(jwt.Expected{Issuer: unverified.Iss, AnyAudience: jwt.Audience{p.srv.URL + "/token"}, Time: now}, time.Minute); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_grant", err.Error())
		return
	}
	at := randString(16)
	p.access[at] = &grant{sub: "sa:" + unverified.Iss, scope: claims.Scope, expires: now.Add(time.Hour)}
	writeJSON(w, http.StatusOK, map[string]any{"access_token": at, "token_type": "Bearer", "expires_in": 3600})
}

// graphGroups serves GET /v1.0/users/{id}/transitiveMemberOf for the user
// whose oid claim (or subject) is id, with the user's own access token,
// paged by $top (at most PageSize) and @odata.nextLink.
func (p *IdP) graphGroups(w http.ResponseWriter, r *http.Request) {
	g, ok := p.bearer(r)
	if !ok {
		writeJSON(w, http.StatusUnauthorized, map[string]any{"error": map[string]string{"code": "InvalidAuthenticationToken", "message": "bad token"}})
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	id := r.PathValue("id")
	var user *userState
	for _, u := range p.users {
		if u.Subject == id || u.Claims["oid"] == id {
			user = u
		}
	}
	if user == nil || user.Subject != g.sub || user.disabled {
		writeJSON(w, http.StatusForbidden, map[string]any{"error": map[string]string{"code": "Authorization_RequestDenied", "message": "forbidden"}})
		return
	}
	q := r.URL.Query()
	top := p.opts.PageSize
	if n, err := strconv.Atoi(q.Get("$top")); err == nil && n > 0 && n < top {
		top = n
	}
	start, _ := strconv.Atoi(q.Get("$skiptoken"))
	page, next := pageOf(user.Groups, start, top)
	value := make([]map[string]any, 0, len(page))
	for _, gr := range page {
		value = append(value, map[string]any{"@odata.type": "#microsoft.graph.group", "id": gr.ID, "displayName": gr.DisplayName})
	}
	if start == 0 {
		// A directory role is a transitiveMemberOf entry that is not a group.
		value = append(value, map[string]any{"@odata.type": "#microsoft.graph.directoryRole", "id": "role-" + id, "displayName": "Directory Readers"})
	}
	resp := map[string]any{"value": value}
	if next >= 0 {
		nq := url.Values{}
		for k, v := range q {
			nq[k] = v
		}
		nq.Set("$skiptoken", strconv.Itoa(next))
		resp["@odata.nextLink"] = p.srv.URL + r.URL.Path + "?" + nq.Encode()
	}
	writeJSON(w, http.StatusOK, resp)
}

// directoryGroups serves the Admin SDK Directory groups list
// (GET /admin/directory/v1/groups?userKey=) to service accounts holding
// DirectoryScope, paged by pageToken/nextPageToken.
func (p *IdP) directoryGroups(w http.ResponseWriter, r *http.Request) {
	g, ok := p.bearer(r)
	if !ok || !strings.HasPrefix(g.sub, "sa:") || !hasScope(g.scope, DirectoryScope) {
		writeJSON(w, http.StatusForbidden, map[string]any{"error": map[string]any{"code": 403, "message": "Not Authorized to access this resource/api"}})
		return
	}
	q := r.URL.Query()
	p.mu.Lock()
	defer p.mu.Unlock()
	var user *userState
	for _, u := range p.users {
		if u.Claims["email"] == q.Get("userKey") {
			user = u
		}
	}
	if user == nil {
		writeJSON(w, http.StatusNotFound, map[string]any{"error": map[string]any{"code": 404, "message": "Resource Not Found: userKey"}})
		return
	}
	start, _ := strconv.Atoi(q.Get("pageToken"))
	page, next := pageOf(user.Groups, start, p.opts.PageSize)
	groups := make([]map[string]any, 0, len(page))
	for _, gr := range page {
		groups = append(groups, map[string]any{"kind": "admin#directory#group", "id": gr.ID, "email": gr.Email, "name": gr.DisplayName})
	}
	resp := map[string]any{"kind": "admin#directory#groups", "groups": groups}
	if next >= 0 {
		resp["nextPageToken"] = strconv.Itoa(next)
	}
	writeJSON(w, http.StatusOK, resp)
}

// pageOf returns groups[start:start+n] and the next start (-1 at the end).
func pageOf(groups []Group, start, n int) ([]Group, int) {
	if start < 0 || start > len(groups) {
		start = len(groups)
	}
	end := min(start+n, len(groups))
	if end == len(groups) {
		return groups[start:end], -1
	}
	return groups[start:end], end
}
