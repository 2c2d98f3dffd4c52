package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/connectors"
	"github.com/fedbroker/fedbroker/connectors/jwks"
	"github.com/fedbroker/fedbroker/connectors/registry"
	"github.com/fedbroker/fedbroker/connectors/workload"
	"github.com/fedbroker/fedbroker/problem"
)

// Deps are what compiling a configuration needs from the broker.
type Deps struct {
	// Issuer is the broker's issuer URL (no trailing slash).
	Issuer     string
	Logger     *slog.Logger
	HTTPClient *http.Client
	Now        func() time.Time
	// Algorithms are the signing algorithms the broker has keys for, the
	// default first. Empty skips the per-client algorithm check (Check).
	Algorithms []string
	// ReplayCache lets connectors accept a message once (SAML assertions).
	ReplayCache connectors.ReplayCache
	// KeySets fetches private_key_jwt clients' jwks_uri; one instance
	// should outlive reloads. Nil builds one for this configuration.
	KeySets *jwks.Cache
	// DeferUnreachable opens a connector whose upstream cannot be reached
	// on first use instead of failing the whole configuration.
	DeferUnreachable bool
}

func (d *Deps) defaults() {
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.HTTPClient == nil {
		d.HTTPClient = &http.Client{Timeout: 15 * time.Second}
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.ReplayCache == nil {
		d.ReplayCache = refuseAll{}
	}
	if d.KeySets == nil {
		d.KeySets = jwks.NewCache(jwks.Options{Client: d.HTTPClient, Now: d.Now})
	}
	d.Issuer = strings.TrimSuffix(d.Issuer, "/")
}

// Compile opens every connector and workload issuer of cfg and compiles
// every mapping. All problems are collected and returned at once as
// config.Errors, each with its YAML path.
func Compile(ctx context.Context, cfg *config.Config, deps Deps) (*Runtime, error) {
	return compile(ctx, cfg, deps, true)
}

// Check compiles cfg the way Compile does, without serving, and returns
// every problem with its YAML path: what `fedbroker check` runs after
// config validation. With offline set, connectors and workload issuers are
// validated but not opened, so nothing reaches the network.
func Check(ctx context.Context, cfg *config.Config, deps Deps, offline bool) error {
	rt, err := compile(ctx, cfg, deps, !offline)
	if err != nil {
		return err
	}
	rt.Close()
	return nil
}

func compile(ctx context.Context, cfg *config.Config, deps Deps, open bool) (*Runtime, error) {
	deps.defaults()
	var problems config.Errors
	add := func(path, format string, args ...any) {
		problems = append(problems, config.Problem{Path: path, Message: fmt.Sprintf(format, args...)})
	}
	rt := &Runtime{
		Tokens:     cfg.Tokens,
		clients:    make(map[string]*Client),
		connectors: make(map[string]*Connector),
		workloads:  make(map[string]*Workload),
		linkGroups: make(map[string][]int),
	}
	maps := newResolver(cfg)
	types := registry.Types()
	for i, cc := range cfg.Connectors {
		path := fmt.Sprintf("connectors[%d]", i)
		typed, errs := cc.Decode(types)
		problems = append(problems, problem.Prefix(path, errs)...)
		if typed == nil || len(errs) > 0 {
			continue
		}
		conn := &Connector{ID: cc.ID, Type: cc.Type, Name: cc.Name, Domains: lowerDomains(cc.Domains), UpstreamLogout: cc.LogsOutUpstream()}
		if conn.Name == "" {
			conn.Name = cc.ID
		}
		m, ps := maps.resolve(cc.Mapping, cc.Type, path)
		problems = append(problems, ps...)
		conn.Mapping = m
		if !open {
			continue
		}
		copts := connectors.Options{
			Logger:      deps.Logger.With("connector", cc.ID),
			HTTPClient:  deps.HTTPClient,
			Now:         deps.Now,
			CallbackURL: CallbackURL(deps.Issuer, cc.ID),
			BaseURL:     deps.Issuer,
			ReplayCache: deps.ReplayCache,
		}
		openIt := func(ctx context.Context) (connectors.Connector, error) {
			impl, err := typed.Open(ctx, cc.ID, copts)
			if err != nil {
				return nil, err
			}
			if _, err := connectors.SignInKind(impl); err != nil {
				if c, ok := impl.(io.Closer); ok {
					_ = c.Close()
				}
				return nil, err
			}
			return impl, nil
		}
		impl, lazy, err := openNowOrLater(ctx, openIt, deps.DeferUnreachable, deps.Now)
		if err != nil {
			add(path+".config", "cannot open connector: %v", err)
			continue
		}
		if lazy != nil {
			deps.Logger.Warn("connector upstream unreachable; it will be opened on first use", "connector", cc.ID, "err", lazy.lastErr)
		}
		conn.impl, conn.lazy = impl, lazy
		rt.connectors[cc.ID] = conn
		rt.order = append(rt.order, cc.ID)
	}
	for i, wc := range cfg.Workloads {
		path := fmt.Sprintf("workloads[%d]", i)
		w := &Workload{ID: wc.ID}
		var wcfg workload.Config
		errs := wc.Decode(&wcfg)
		problems = append(problems, problem.Prefix(path, errs)...)
		m, ps := maps.resolve(wc.Mapping, "workload", path)
		problems = append(problems, ps...)
		w.Mapping = m
		if !open || len(errs) > 0 {
			continue
		}
		wopts := connectors.Options{Logger: deps.Logger.With("workload", wc.ID), HTTPClient: deps.HTTPClient, Now: deps.Now, BaseURL: deps.Issuer}
		openIt := func(ctx context.Context) (*workload.Verifier, error) { return wcfg.Open(ctx, wc.ID, wopts) }
		v, lazy, err := openNowOrLater(ctx, openIt, deps.DeferUnreachable, deps.Now)
		if err != nil {
			add(path, "cannot open workload issuer: %v", err)
			continue
		}
		if lazy != nil {
			deps.Logger.Warn("workload issuer unreachable; it will be opened on first use", "workload", wc.ID, "err", lazy.lastErr)
		}
		w.Issuer, w.verifier, w.lazy = wcfg.Issuer, v, lazy
		rt.workloads[wc.ID] = w
	}
	problems = append(problems, maps.problems...)
	for gi, group := range cfg.Links.Groups {
		for _, id := range group {
			rt.linkGroups[id] = append(rt.linkGroups[id], gi)
		}
	}
	for ci, cc := range cfg.Clients {
		path := fmt.Sprintf("clients[%d]", ci)
		cl, ps := compileClient(ctx, cc, cfg.Tokens, deps)
		for _, p := range ps {
			add(path+"."+p.Path, "%s", p.Message)
		}
		rt.clients[cc.ID] = cl
	}
	if len(problems) > 0 {
		rt.Close()
		return nil, problems
	}
	return rt, nil
}

func compileClient(ctx context.Context, cc config.Client, tokens config.Tokens, deps Deps) (*Client, []config.Problem) {
	var ps []config.Problem
	cl := &Client{
		Client:         cc,
		Alg:            cc.IDTokenSignedResponseAlg,
		IDTokenTTL:     cc.IDTokenLifetime,
		AccessTokenTTL: cc.AccessTokenLifetime,
		redirects:      toSet(cc.RedirectURIs),
		logouts:        toSet(cc.PostLogoutRedirectURIs),
		grants:         toSet(cc.GrantTypes),
		scopes:         toSet(cc.Scopes),
		connectors:     toSet(cc.Connectors),
	}
	if cc.TokenEndpointAuthMethod == config.AuthPrivateKeyJWT {
		ks, err := clientKeys(cc, deps.KeySets)
		if err != nil {
			ps = append(ps, config.Problem{Path: "jwks", Message: err.Error()})
		}
		cl.Keys = ks
	}
	if algs := deps.Algorithms; len(algs) > 0 {
		switch {
		case cl.Alg == "":
			cl.Alg = algs[0]
		case !slices.Contains(algs, cl.Alg):
			ps = append(ps, config.Problem{Path: "id_token_signed_response_alg", Message: fmt.Sprintf("no signing key for %s: add it to signing.algorithms", cl.Alg)})
		}
	}
	// A configuration built in code skips SetDefaults and Validate: the
	// client still never signs what its platform refuses.
	if p, ok := config.Platforms[cc.Profile]; ok && cl.Alg != "" && !slices.Contains(p.Algorithms, cl.Alg) {
		ps = append(ps, config.Problem{Path: "id_token_signed_response_alg", Message: fmt.Sprintf("%s accepts %s, not %s", p.Title, strings.Join(p.Algorithms, " or "), cl.Alg)})
	}
	if cl.IDTokenTTL == 0 {
		cl.IDTokenTTL = tokens.IDToken
	}
	if cl.AccessTokenTTL == 0 {
		cl.AccessTokenTTL = tokens.AccessToken
	}
	return cl, ps
}

// clientKeys returns the key set of a private_key_jwt client: its inline
// JWKS, or its jwks_uri behind the shared, throttled cache.
func clientKeys(cc config.Client, sets *jwks.Cache) (oidc.KeySet, error) {
	if cc.JWKS != "" {
		ks, err := jwks.ParseStatic([]byte(cc.JWKS), nil)
		if err != nil {
			return nil, fmt.Errorf("jwks: %w", err)
		}
		return ks, nil
	}
	return sets.KeySet(cc.JWKSURI), nil
}

func isUnavailable(err error) bool { return errors.Is(err, connectors.ErrUnavailable) }

// refuseAll is the replay cache of connectors opened without storage (by
// Check): their connectors are opened only to be closed, and accept no
// message.
type refuseAll struct{}

func (refuseAll) MarkSeen(context.Context, string, string, time.Time) (bool, error) {
	return false, errors.New("runtime: a configuration check accepts no sign-in")
}

func toSet(xs []string) map[string]bool {
	m := make(map[string]bool, len(xs))
	for _, x := range xs {
		m[x] = true
	}
	return m
}

func lowerDomains(xs []string) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = strings.ToLower(strings.TrimPrefix(x, "@"))
	}
	return out
}
