package broker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/connectors"
	"github.com/fedbroker/fedbroker/connectors/workload"
	"github.com/fedbroker/fedbroker/mapping"
)

// runtime is one compiled configuration. It is immutable once built and is
// swapped atomically on reload.
type runtime struct {
	cfg            *config.Config
	clients        map[string]*client
	connectors     map[string]*connector
	connectorOrder []string
	// linkGroups maps a connector id to the indexes of the links groups it
	// belongs to; absent when the connector links with nothing.
	linkGroups map[string][]int
	tokens     config.Tokens
	workloads  map[string]*workloadIssuer
}

// workloadIssuer is one trusted workload issuer with its mapping.
type workloadIssuer struct {
	id       string
	verifier *workload.Verifier
	mapping  *mapping.Mapping
}

// connector is one opened upstream with its compiled mapping.
type connector struct {
	id      string
	typ     string
	name    string
	impl    any
	mapping *mapping.Mapping
	domains []string
}

// client is one downstream application with its policy resolved.
type client struct {
	config.Client
	redirects  map[string]bool
	logouts    map[string]bool
	grants     map[string]bool
	scopes     map[string]bool
	connectors map[string]bool // empty: all
	alg        string          // signing algorithm, resolved at compile time
	idTTL      time.Duration
	accessTTL  time.Duration
	keys       oidc.KeySet // private_key_jwt clients only
}

func (c *client) allowsConnector(id string) bool {
	return len(c.connectors) == 0 || c.connectors[id]
}

func (rt *runtime) close() {
	for _, c := range rt.connectors {
		if cl, ok := c.impl.(io.Closer); ok {
			_ = cl.Close()
		}
	}
}

// compile opens connectors and compiles mappings. Every problem is
// collected and returned at once as config.Errors.
func (s *Server) compile(ctx context.Context, cfg *config.Config) (*runtime, error) {
	return s.compileWith(ctx, cfg, true)
}

// compileWith compiles cfg; with open=false connectors are validated but not
// opened (no upstream discovery, no network).
func (s *Server) compileWith(ctx context.Context, cfg *config.Config, open bool) (*runtime, error) {
	var problems config.Errors
	add := func(path, format string, args ...any) {
		problems = append(problems, config.Problem{Path: path, Message: fmt.Sprintf(format, args...)})
	}
	rt := &runtime{
		cfg:        cfg,
		clients:    make(map[string]*client),
		connectors: make(map[string]*connector),
		linkGroups: make(map[string][]int),
		tokens:     cfg.Tokens,
	}
	compiled := make(map[string]*mapping.Mapping)
	for name, spec := range cfg.Mappings {
		m, errs := mapping.Compile(spec, mapping.CompileOptions{})
		for _, e := range errs {
			add("mappings."+name+"."+e.Path, "%s", e.Message)
		}
		compiled[name] = m
	}
	for i, cc := range cfg.Connectors {
		path := fmt.Sprintf("connectors[%d]", i)
		typed, errs := cc.Decode()
		for _, e := range errs {
			add(path+"."+e.Path, "%s", e.Message)
		}
		if typed == nil || len(errs) > 0 {
			continue
		}
		conn := &connector{id: cc.ID, typ: cc.Type, name: cc.Name, domains: lowerAll(cc.Domains)}
		if conn.name == "" {
			conn.name = cc.ID
		}
		if cc.Mapping != "" {
			conn.mapping = compiled[cc.Mapping]
			if _, ok := cfg.Mappings[cc.Mapping]; !ok {
				add(path+".mapping", "names mapping %q, which is not defined", cc.Mapping)
			}
		} else {
			m, errs := mapping.Compile(mapping.Default(cc.Type), mapping.CompileOptions{})
			for _, e := range errs {
				add(path+".mapping", "default mapping for %s does not compile: %s", cc.Type, e.Error())
			}
			conn.mapping = m
		}
		if !open {
			continue
		}
		copts := connectors.Options{
			Logger:      s.log.With("connector", cc.ID),
			HTTPClient:  s.client,
			Now:         s.now,
			CallbackURL: s.callbackURL(cc.ID),
			BaseURL:     s.issuer,
		}
		impl, err := typed.Open(ctx, cc.ID, copts)
		switch {
		case err != nil && s.deferUnreachable && errors.Is(err, connectors.ErrUnavailable):
			// Serve anyway; open on first use (see deferredConnector).
			s.log.Warn("connector upstream unreachable; it will be opened on first use", "connector", cc.ID, "err", err)
			impl = &deferredConnector{
				open:       func(ctx context.Context) (any, error) { return typed.Open(ctx, cc.ID, copts) },
				retryEvery: 15 * time.Second,
				now:        s.now,
				lastErr:    err,
				lastTry:    s.now(),
				onOpened:   s.wireConnector,
			}
		case err != nil:
			add(path+".config", "cannot open connector: %v", err)
			continue
		}
		s.wireConnector(impl)
		conn.impl = impl
		rt.connectors[cc.ID] = conn
		rt.connectorOrder = append(rt.connectorOrder, cc.ID)
	}
	rt.workloads = make(map[string]*workloadIssuer)
	for i, wc := range cfg.Workloads {
		path := fmt.Sprintf("workloads[%d]", i)
		w := &workloadIssuer{id: wc.ID}
		if wc.Mapping != "" {
			w.mapping = compiled[wc.Mapping]
			if _, ok := cfg.Mappings[wc.Mapping]; !ok {
				add(path+".mapping", "names mapping %q, which is not defined", wc.Mapping)
			}
		} else {
			m, errs := mapping.Compile(mapping.Default("workload"), mapping.CompileOptions{})
			for _, e := range errs {
				add(path+".mapping", "default workload mapping does not compile: %s", e.Error())
			}
			w.mapping = m
		}
		if !open {
			continue
		}
		v, err := wc.Config.Open(ctx, wc.ID, connectors.Options{Logger: s.log.With("workload", wc.ID), HTTPClient: s.client, Now: s.now, BaseURL: s.issuer})
		if err != nil {
			add(path, "cannot open workload issuer: %v", err)
			continue
		}
		w.verifier = v
		rt.workloads[wc.ID] = w
	}
	for gi, group := range cfg.Links.Groups {
		for _, id := range group {
			rt.linkGroups[id] = append(rt.linkGroups[id], gi)
		}
	}
	for ci, cc := range cfg.Clients {
		cl := &client{
			Client:     cc,
			redirects:  toSet(cc.RedirectURIs),
			logouts:    toSet(cc.PostLogoutRedirectURIs),
			grants:     toSet(cc.GrantTypes),
			scopes:     toSet(cc.Scopes),
			connectors: toSet(cc.Connectors),
			alg:        cc.IDTokenSignedResponseAlg,
			idTTL:      cc.IDTokenLifetime,
			accessTTL:  cc.AccessTokenLifetime,
		}
		if cc.TokenEndpointAuthMethod == authPrivateKeyJWT {
			ks, err := s.clientKeys(ctx, cc.JWKS, cc.JWKSURI)
			if err != nil {
				add(fmt.Sprintf("clients[%d].jwks", ci), "%v", err)
			}
			cl.keys = ks
		}
		if s.keys != nil {
			switch algs := s.keys.Algorithms(); {
			case cl.alg == "":
				cl.alg = algs[0] // resolved once here, not per token
			case !slices.Contains(algs, cl.alg):
				add(fmt.Sprintf("clients[%d].id_token_signed_response_alg", ci), "no signing key for %s: add it to signing.algorithms", cl.alg)
			}
		}
		if cl.idTTL == 0 {
			cl.idTTL = cfg.Tokens.IDToken
		}
		if cl.accessTTL == 0 {
			cl.accessTTL = cfg.Tokens.AccessToken
		}
		rt.clients[cc.ID] = cl
	}
	if len(problems) > 0 {
		rt.close()
		return nil, problems
	}
	return rt, nil
}

// Check opens and compiles everything in cfg the way New would, without
// serving, and returns every problem with its YAML path. It is what
// `fedbroker check` runs after config validation. With offline set,
// connectors are validated but not opened, so nothing reaches the network.
func Check(ctx context.Context, cfg *config.Config, opts Options, offline bool) error {
	s := &Server{issuer: strings.TrimSuffix(cfg.Issuer, "/"), log: opts.Logger, client: opts.HTTPClient, now: opts.Now}
	if s.log == nil {
		s.log = discardLogger()
	}
	if s.now == nil {
		s.now = time.Now
	}
	rt, err := s.compileWith(ctx, cfg, !offline)
	if err != nil {
		return err
	}
	rt.close()
	return nil
}

func toSet(xs []string) map[string]bool {
	m := make(map[string]bool, len(xs))
	for _, x := range xs {
		m[x] = true
	}
	return m
}

func lowerAll(xs []string) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = strings.ToLower(strings.TrimPrefix(x, "@"))
	}
	return out
}

// matchRedirect reports whether uri is registered for the client. The match
// is exact, except that a registered loopback http redirect (127.0.0.1,
// [::1], localhost) matches any port (RFC 8252 §7.3).
func (c *client) matchRedirect(uri string) bool {
	if c.redirects[uri] {
		return true
	}
	u, err := url.Parse(uri)
	if err != nil || u.Scheme != "http" || !config.IsLoopback(u.Hostname()) || u.User != nil || u.Fragment != "" || u.RawFragment != "" {
		return false
	}
	for r := range c.redirects {
		ru, err := url.Parse(r)
		if err != nil || ru.Scheme != "http" || !config.IsLoopback(ru.Hostname()) {
			continue
		}
		if ru.Hostname() == u.Hostname() && ru.EscapedPath() == u.EscapedPath() && ru.RawQuery == u.RawQuery && !strings.Contains(uri, "#") {
			return true
		}
	}
	return false
}

// connectorsFor lists, in config order, the connectors a client may use.
func (rt *runtime) connectorsFor(cl *client) []*connector {
	var out []*connector
	for _, id := range rt.connectorOrder {
		if cl.allowsConnector(id) {
			out = append(out, rt.connectors[id])
		}
	}
	return out
}

// routeByHint picks the connector whose domain matches the login_hint's
// email domain, among those the client may use.
func (rt *runtime) routeByHint(cl *client, hint string) *connector {
	at := strings.LastIndexByte(hint, '@')
	if at < 0 {
		return nil
	}
	domain := strings.ToLower(hint[at+1:])
	for _, c := range rt.connectorsFor(cl) {
		if slices.Contains(c.domains, domain) {
			return c
		}
	}
	return nil
}

// linkable reports whether identities from connectors a and b may share one
// subject through a link key.
func (rt *runtime) linkable(a, b string) bool {
	for _, ga := range rt.linkGroups[a] {
		if slices.Contains(rt.linkGroups[b], ga) {
			return true
		}
	}
	return false
}
