package demo

import (
	"encoding/json"
	"net/http"

	"github.com/fedbroker/fedbroker/verify"
)

// APIHandler is the demo API: every request must carry an access token of
// the broker for the API's audience, verified locally by the verify package
// (no call to the broker per request). A token bound to a DPoP key (RFC
// 9449, cnf.jkt) passes only as "Authorization: DPoP" with a proof of that
// key; as a bearer token it is refused.
func APIHandler(v *verify.Verifier) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /whoami", func(w http.ResponseWriter, r *http.Request) {
		c, _ := verify.ClaimsFromContext(r.Context())
		w.Header().Set("Content-Type", "application/json")
		out := map[string]any{
			"verified":  true,
			"sub":       c.Subject,
			"client_id": c.ClientID,
			"scope":     c.Scope,
			"expires":   c.Expiry,
		}
		if len(c.Groups) > 0 {
			out["groups"] = c.Groups
		}
		if len(c.Roles) > 0 {
			out["roles"] = c.Roles
		}
		if c.KeyThumbprint != "" {
			out["cnf_jkt"] = c.KeyThumbprint
		}
		if email, ok := c.Raw["email"]; ok {
			out["email"] = email
		}
		_ = json.NewEncoder(w).Encode(out)
	})
	return v.Middleware()(mux)
}
