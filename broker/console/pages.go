package console

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"go.yaml.in/yaml/v3"

	"github.com/fedbroker/fedbroker/broker/admin"
	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/keys"
	"github.com/fedbroker/fedbroker/broker/observe"
)

// overviewData fills overview.html.
type overviewData struct {
	Issuer, Version string
	Storage         admin.StorageStatus
	Ready           bool
	NotReady        string
	Keys            keysView
	Fleet           fleetView
	Charts          []chart
}

// keysView is what the overview shows of the signing keys.
type keysView struct {
	Available bool
	// Algorithms this replica signs with (the first is its default);
	// Published those in the shared key set.
	Algorithms, Published []string
	// Keys are the public keys served in the JWKS.
	Keys []jwk
	// RotationPeriod is how old the active key gets before rotation;
	// Rotations how many this replica performed or adopted.
	RotationPeriod time.Duration
	Rotations      uint64
	// Set is the shared key set by algorithm: active, next and retired
	// keys with their ages (nil for static keys).
	Set []keys.AlgorithmInfo
}

type jwk struct {
	KID string `json:"kid"`
	Alg string `json:"alg"`
	Kty string `json:"kty"`
	Use string `json:"use"`
}

func (c *Console) keysView() keysView {
	km := c.deps.Keys
	if km == nil {
		return keysView{}
	}
	v := keysView{Available: true, Algorithms: km.Algorithms(), Published: km.PublishedAlgorithms(), RotationPeriod: km.RotationPeriod(), Rotations: km.Rotations(), Set: km.Summary()}
	body, _ := km.JWKS()
	var set struct {
		Keys []jwk `json:"keys"`
	}
	if json.Unmarshal(body, &set) == nil {
		v.Keys = set.Keys
	}
	return v
}

func (c *Console) handleOverview(ec echo.Context) error {
	ctx := ec.Request().Context()
	d := overviewData{Issuer: c.deps.Issuer, Version: c.deps.Version, Storage: c.deps.Storage, Ready: true, Keys: c.keysView()}
	if d.Version == "" {
		d.Version = observe.Version()
	}
	if c.deps.Readiness != nil {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		if err := c.deps.Readiness(rctx); err != nil {
			d.Ready, d.NotReady = false, err.Error()
		}
		cancel()
	}
	d.Fleet = c.fleet(ctx)
	d.Charts = charts(d.Fleet.Series)
	return c.render(ec.Response(), ec.Request(), http.StatusOK, "overview.html", d)
}

// connectorView is one connector on the connectors page.
type connectorView struct {
	admin.ConnectorStatus
	// SignIns are the sign-ins of the last hour by outcome.
	SignIns []outcomeCount
	// Settings are its effective configuration, secrets masked.
	Settings []setting
	Mapping  string
	Domains  []string
}

type outcomeCount struct {
	Outcome string
	Count   float64
}

// setting is one configuration value as the console shows it.
type setting struct{ Key, Value string }

func (c *Console) handleConnectors(ec echo.Context) error {
	ctx := ec.Request().Context()
	statuses := admin.Connectors(ctx, c.deps.Runtime(), c.health())
	counts := make(map[string][]outcomeCount)
	for _, s := range c.fleet(ctx).Series {
		if s.Kind != "sign_ins" {
			continue
		}
		conn, outcome, _ := strings.Cut(s.Label, " ")
		counts[conn] = append(counts[conn], outcomeCount{outcome, s.Total})
	}
	cfgs := make(map[string]config.Connector)
	if c.deps.Config != nil {
		for _, cc := range c.deps.Config().Connectors {
			cfgs[cc.ID] = cc
		}
	}
	out := make([]connectorView, 0, len(statuses))
	for _, st := range statuses {
		v := connectorView{ConnectorStatus: st, SignIns: counts[st.ID]}
		if cc, ok := cfgs[st.ID]; ok {
			v.Settings = maskedSettings(&cc.Config)
			v.Mapping = cc.Mapping
			v.Domains = cc.Domains
		}
		v.Problem = maskText(v.Problem)
		v.Health.LastError = maskText(v.Health.LastError)
		out = append(out, v)
	}
	return c.render(ec.Response(), ec.Request(), http.StatusOK, "connectors.html", out)
}

func (c *Console) health() *observe.Health {
	if c.deps.Health == nil {
		return observe.NewHealth()
	}
	return c.deps.Health
}

// clientView is one client on the clients page.
type clientView struct {
	ID, Name, Kind, AuthMethod, Alg string
	Grants, RedirectURIs, Audiences []string
	Scopes, Connectors              []string
	Secret                          string // "set" or "not set"
	AccessTTL, IDTTL                time.Duration
	// Tokens are its token responses of the last hour by grant type.
	Tokens []outcomeCount
}

// clientsData fills clients.html.
type clientsData struct {
	Clients []clientView
	// Tokens are the token responses of the last hour by grant type, all
	// clients and replicas together.
	Tokens []outcomeCount
}

func (c *Console) handleClients(ec echo.Context) error {
	rt := c.deps.Runtime()
	var d clientsData
	if c.deps.Config != nil {
		for _, cc := range c.deps.Config().Clients {
			v := clientView{
				ID: cc.ID, Name: cc.Name, Kind: "confidential", AuthMethod: cc.TokenEndpointAuthMethod,
				Grants: cc.GrantTypes, RedirectURIs: cc.RedirectURIs, Audiences: cc.Audiences, Scopes: cc.Scopes, Connectors: cc.Connectors,
				Secret: "not set",
			}
			if cc.Public {
				v.Kind = "public"
			}
			if cc.SecretHash != "" {
				v.Secret = "set"
			}
			if rc, ok := rt.Client(cc.ID); ok {
				v.Alg, v.AccessTTL, v.IDTTL = rc.Alg, rc.AccessTokenTTL, rc.IDTokenTTL
				v.Grants, v.Scopes, v.Audiences = rc.GrantTypes, rc.Scopes, rc.Audiences
			}
			if len(v.Grants) == 0 {
				v.Grants = []string{"authorization_code", "refresh_token"}
			}
			if len(v.Audiences) == 0 {
				v.Audiences = []string{cc.ID}
			}
			if v.AuthMethod == "" && !cc.Public {
				v.AuthMethod = "client_secret_basic or client_secret_post"
			}
			if cc.Public {
				v.AuthMethod = "none (public)"
			}
			d.Clients = append(d.Clients, v)
		}
	}
	perClient := make(map[string][]outcomeCount)
	for _, s := range c.fleet(ec.Request().Context()).Series {
		switch s.Kind {
		case "tokens":
			d.Tokens = append(d.Tokens, outcomeCount{s.Label, s.Total})
		case "client_tokens":
			client, grant, _ := strings.Cut(s.Label, " ")
			perClient[client] = append(perClient[client], outcomeCount{grant, s.Total})
		}
	}
	for i := range d.Clients {
		d.Clients[i].Tokens = perClient[d.Clients[i].ID]
	}
	return c.render(ec.Response(), ec.Request(), http.StatusOK, "clients.html", d)
}

// sensitiveWords mark a configuration field whose value is never shown:
// only whether it is set.
var sensitiveWords = []string{"secret", "password", "passwd", "key", "token", "credential", "private", "cert", "pin"}

func sensitive(name string) bool {
	n := strings.ToLower(name)
	return slices.ContainsFunc(sensitiveWords, func(w string) bool { return strings.Contains(n, w) })
}

// maskedSettings flattens a connector's config: block into dotted keys
// with values as text; a field whose name looks sensitive (and everything
// below it) shows only "set" or "not set", and credentials inside URLs
// are masked.
func maskedSettings(n *yaml.Node) []setting {
	var out []setting
	var walk func(prefix string, n *yaml.Node, masked bool)
	walk = func(prefix string, n *yaml.Node, masked bool) {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, ch := range n.Content {
				walk(prefix, ch, masked)
			}
		case yaml.AliasNode:
			if n.Alias != nil {
				walk(prefix, n.Alias, masked)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := n.Content[i].Value
				p := k
				if prefix != "" {
					p = prefix + "." + k
				}
				walk(p, n.Content[i+1], masked || sensitive(k))
			}
		case yaml.SequenceNode:
			if masked {
				out = append(out, setting{prefix, setOrNot(len(n.Content) > 0)})
				return
			}
			for i, ch := range n.Content {
				walk(fmt.Sprintf("%s[%d]", prefix, i), ch, masked)
			}
		case yaml.ScalarNode:
			if masked {
				out = append(out, setting{prefix, setOrNot(n.Value != "")})
				return
			}
			out = append(out, setting{prefix, maskText(n.Value)})
		}
	}
	if n != nil {
		walk("", n, false)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

func setOrNot(set bool) string {
	if set {
		return "set"
	}
	return "not set"
}

// maskText hides credentials embedded in text: the password of any URL
// (scheme://user:password@host).
func maskText(s string) string {
	i := strings.Index(s, "://")
	if i < 0 {
		return s
	}
	rest := s[i+3:]
	end := strings.IndexAny(rest, "/ \t\n\"'?#")
	if end < 0 {
		end = len(rest)
	}
	auth := rest[:end]
	at := strings.LastIndexByte(auth, '@')
	colon := strings.IndexByte(auth, ':')
	if at > 0 && colon >= 0 && colon < at {
		auth = auth[:colon] + ":****" + auth[at:]
	}
	return s[:i+3] + auth + maskText(rest[end:])
}
