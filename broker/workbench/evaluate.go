package workbench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/runtime"
	"github.com/fedbroker/fedbroker/broker/storage"
	"github.com/fedbroker/fedbroker/broker/tokens"
	"github.com/fedbroker/fedbroker/mapping"
	"github.com/fedbroker/fedbroker/mapping/spec"
)

// Deps are what the workbench reads. Nothing in it is written, except the
// test sign-in records in Store.
type Deps struct {
	// Issuer is the broker's public issuer URL (no trailing slash).
	Issuer string
	// Runtime is the configuration being served; Config its source.
	Runtime func() *runtime.Runtime
	Config  func() *config.Config
	// Store is read for identity links (never written) and holds the
	// test sign-in records.
	Store storage.Storage
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// Workbench evaluates mappings for the console.
type Workbench struct {
	deps Deps
}

// New returns a workbench over deps.
func New(deps Deps) *Workbench {
	if deps.Now == nil {
		deps.Now = time.Now
	}
	deps.Issuer = strings.TrimSuffix(deps.Issuer, "/")
	return &Workbench{deps: deps}
}

// Target is a connector, or a workload issuer, whose mapping runs.
type Target struct {
	ID       string `json:"id"`
	Workload bool   `json:"workload,omitempty"`
}

// Key is the target as one form value: "connector:ID" or "workload:ID".
func (t Target) Key() string {
	if t.Workload {
		return "workload:" + t.ID
	}
	return "connector:" + t.ID
}

// ParseTarget reads a Key.
func ParseTarget(key string) (Target, bool) {
	kind, id, ok := strings.Cut(key, ":")
	switch {
	case !ok || id == "":
		return Target{}, false
	case kind == "connector":
		return Target{ID: id}, true
	case kind == "workload":
		return Target{ID: id, Workload: true}, true
	}
	return Target{}, false
}

// TargetInfo describes a target for the page.
type TargetInfo struct {
	Target
	Name string `json:"name"`
	Type string `json:"type"`
	// MappingName is the named mapping it uses; "" for its type's default.
	MappingName string `json:"mapping,omitempty"`
	// Links lists the connectors it shares subjects with (links.groups).
	Links []string `json:"links,omitempty"`
}

// MappingLabel is "mapping NAME" or "default mapping of TYPE".
func (t TargetInfo) MappingLabel() string {
	if t.MappingName != "" {
		return "mapping " + t.MappingName
	}
	return "default mapping of " + t.Type
}

// Targets lists the running configuration's connectors, then its workload
// issuers.
func (w *Workbench) Targets() []TargetInfo {
	cfg := w.deps.Config()
	var out []TargetInfo
	for _, c := range cfg.Connectors {
		name := c.Name
		if name == "" {
			name = c.ID
		}
		out = append(out, TargetInfo{Target: Target{ID: c.ID}, Name: name, Type: c.Type, MappingName: c.Mapping, Links: linkGroup(cfg, c.ID)})
	}
	for _, wl := range cfg.Workloads {
		out = append(out, TargetInfo{Target: Target{ID: wl.ID, Workload: true}, Name: wl.ID, Type: "workload", MappingName: wl.Mapping})
	}
	return out
}

// Info returns the target t of the running configuration.
func (w *Workbench) Info(t Target) (TargetInfo, error) {
	for _, ti := range w.Targets() {
		if ti.Target == t {
			return ti, nil
		}
	}
	if t.Workload {
		return TargetInfo{}, fmt.Errorf("no workload issuer %q in the running configuration", t.ID)
	}
	return TargetInfo{}, fmt.Errorf("no connector %q in the running configuration", t.ID)
}

// RunningSpec returns the mapping t runs, as written: its named mapping,
// or its type's default.
func (w *Workbench) RunningSpec(t Target) (spec.Spec, TargetInfo, error) {
	ti, err := w.Info(t)
	if err != nil {
		return spec.Spec{}, ti, err
	}
	if ti.MappingName != "" {
		s, ok := w.deps.Config().Mappings[ti.MappingName]
		if !ok {
			return spec.Spec{}, ti, fmt.Errorf("mapping %q is not defined", ti.MappingName)
		}
		return s, ti, nil
	}
	return mapping.Default(ti.Type), ti, nil
}

// RunningText is the text of the mapping t runs, to start a draft from.
func (w *Workbench) RunningText(t Target) (string, error) {
	s, _, err := w.RunningSpec(t)
	if err != nil {
		return "", err
	}
	return SpecYAML(s), nil
}

// running returns the compiled mapping t runs in the served runtime.
func (w *Workbench) running(t Target) (*mapping.Mapping, string, error) {
	rt := w.deps.Runtime()
	if t.Workload {
		wl, ok := rt.Workload(t.ID)
		if !ok {
			return nil, "", fmt.Errorf("no workload issuer %q in the running configuration", t.ID)
		}
		return wl.Mapping, "workload", nil
	}
	c, ok := rt.Connector(t.ID)
	if !ok {
		return nil, "", fmt.Errorf("no connector %q in the running configuration", t.ID)
	}
	return c.Mapping, c.Type, nil
}

// Request is one evaluation.
type Request struct {
	Target Target
	// Input is the upstream identity (Connector and Workload are set from
	// Target).
	Input runtime.MappingInput
	// Draft, when set and compiled, runs instead of the running mapping.
	Draft *Draft
	// Client and Scopes pick the token claims preview: which claims the
	// client's tokens carry for those scopes. Client "" skips it.
	Client string
	Scopes []string
}

// Evaluation is what the workbench shows for one evaluation.
type Evaluation struct {
	Target TargetInfo `json:"target"`
	// Draft is true when the draft mapping ran.
	Draft bool `json:"draft"`
	// Report is `fedbroker mapping test --explain`'s report.
	Report runtime.MappingReport `json:"report"`
	// Rules is every expression with its result, in evaluation order.
	Rules []Rule `json:"rules"`
	// Linking is the linking decision (nil when the mapping refused).
	Linking *Linking `json:"linking,omitempty"`
	// Tokens is the token claims preview (nil without a client, or when
	// the mapping refused).
	Tokens *TokenPreview `json:"tokens,omitempty"`
}

// Rule is one expression's result.
type Rule struct {
	// Path is the expression's place in the mapping ("require[0].expr",
	// "subject", "link", "claims.groups").
	Path string `json:"path"`
	Expr string `json:"expr"`
	// Result is "passed", "refused" (a require rule that was false),
	// "error", "dropped" (a claim whose value is null or none: not
	// issued) or "value".
	Result string `json:"result"`
	// Value is the JSON of the value; Message the rule's message for a
	// refusal, the error, or what happens to a claim in the tokens.
	Value   string `json:"value,omitempty"`
	Message string `json:"message,omitempty"`
}

// Evaluate runs the draft (when given and compiled) or the running mapping
// of req.Target on req.Input with explain, then the linking decision and
// the token claims preview. It reads storage (links) and writes nothing.
func (w *Workbench) Evaluate(ctx context.Context, req Request) (*Evaluation, error) {
	s, ti, err := w.RunningSpec(req.Target)
	if err != nil {
		return nil, err
	}
	m, typ, err := w.running(req.Target)
	if err != nil {
		return nil, err
	}
	ev := &Evaluation{Target: ti}
	if req.Draft != nil {
		if !req.Draft.OK() {
			return nil, errors.New("the draft mapping does not compile")
		}
		m, s, ev.Draft = req.Draft.Mapping, req.Draft.Spec, true
	}
	in := req.Input
	in.Connector, in.Workload = req.Target.ID, req.Target.Workload
	ev.Report = runtime.RunMapping(ctx, m, typ, in, true)
	ev.Rules = rules(s, ev.Report)
	if ev.Report.Decision != "accepted" {
		return ev, nil
	}
	subject := ev.Report.Subject
	if !in.Workload {
		l, err := w.linking(ctx, in, ev.Report)
		if err != nil {
			return nil, err
		}
		ev.Linking = l
		if l.Subject != "" {
			subject = l.Subject
		}
	}
	if req.Client != "" {
		tp, err := w.preview(req, ev.Report, subject)
		if err != nil {
			return nil, err
		}
		ev.Tokens = tp
		annotate(ev.Rules, s, tp)
	}
	return ev, nil
}

// rules turns the explain steps into the rules table.
func rules(s spec.Spec, rep runtime.MappingReport) []Rule {
	out := make([]Rule, 0, len(rep.Steps))
	for _, st := range rep.Steps {
		r := Rule{Path: st.Path, Expr: st.Expr}
		switch {
		case st.Err != "":
			r.Result, r.Message = "error", st.Err
		case strings.HasPrefix(st.Path, "require["):
			if st.Value == true {
				r.Result = "passed"
			} else {
				r.Result = "refused"
				if i, ok := requireIndex(st.Path); ok && i < len(s.Require) {
					r.Message = "the sign-in is refused: " + s.Require[i].Message
				}
			}
		case st.Value == nil && strings.HasPrefix(st.Path, "claims."):
			r.Result, r.Message = "dropped", "null or none: the claim is not issued"
		default:
			r.Result, r.Value = "value", jsonText(st.Value)
			if (st.Path == "link" || st.Path == "subject") && st.Value == "" {
				r.Message = "empty: no " + st.Path
			}
		}
		out = append(out, r)
	}
	return out
}

func requireIndex(path string) (int, bool) {
	rest, ok := strings.CutPrefix(path, "require[")
	if !ok {
		return 0, false
	}
	num, _, ok := strings.Cut(rest, "]")
	if !ok {
		return 0, false
	}
	i, err := strconv.Atoi(num)
	return i, err == nil
}

// annotate says, for each claim rule, which tokens of the preview carry
// it, or why they do not.
func annotate(rs []Rule, s spec.Spec, tp *TokenPreview) {
	for i := range rs {
		r := &rs[i]
		name, ok := strings.CutPrefix(r.Path, "claims.")
		if !ok || r.Result != "value" {
			continue
		}
		var notes []string
		for _, tok := range []struct {
			label string
			in    bool
			t     *TokenClaims
		}{
			{"ID token", claimIn(s, name, mapping.InIDToken), tp.IDToken},
			{"access token", claimIn(s, name, mapping.InAccessToken), tp.AccessToken},
		} {
			switch {
			case !tok.in:
				notes = append(notes, "not in the "+tok.label+" (in: of the claim)")
			case tok.t == nil:
				notes = append(notes, "no "+tok.label+" is issued")
			case tok.t.Withheld[name] != "":
				notes = append(notes, "withheld from the "+tok.label+": "+tok.t.Withheld[name])
			default:
				notes = append(notes, "in the "+tok.label)
			}
		}
		r.Message = strings.Join(notes, "; ")
	}
}

func claimIn(s spec.Spec, name, tok string) bool {
	c, ok := s.Claims[name]
	if !ok {
		return true
	}
	return c.In == "" || c.In == mapping.InBoth || c.In == tok
}

// Linking is the linking decision for an accepted identity, as a real
// sign-in would make it now (authflow's resolveLink), read from storage
// without writing.
type Linking struct {
	// Decision is "none" (no link key), "not_linked" (the connector links
	// with nothing), "new" (the key is free: a sign-in would create the
	// link), "existing" (the key's link gives this identity's subject, or
	// a linkable connector's), or "conflict" (the sign-in would be
	// refused).
	Decision string `json:"decision"`
	LinkKey  string `json:"link_key,omitempty"`
	// Subject is the subject a sign-in would issue ("" on conflict).
	Subject string `json:"subject,omitempty"`
	// Connectors share subjects with this one (links.groups).
	Connectors []string `json:"connectors,omitempty"`
	// Link is the stored link of the key, when there is one.
	Link *storage.Link `json:"link,omitempty"`
	Note string        `json:"note"`
}

func (w *Workbench) linking(ctx context.Context, in runtime.MappingInput, rep runtime.MappingReport) (*Linking, error) {
	rt := w.deps.Runtime()
	l := &Linking{LinkKey: rep.LinkKey, Subject: rep.Subject, Connectors: linkGroup(w.deps.Config(), in.Connector)}
	switch {
	case rep.LinkKey == "":
		l.Decision, l.Note = "none", "The mapping gives no link key: the subject shown is the one issued."
		return l, nil
	case !rt.Links(in.Connector):
		l.Decision, l.Note = "not_linked", fmt.Sprintf("Connector %s is in no links.groups entry, so link key %q links nothing: the subject shown is the one issued.", in.Connector, rep.LinkKey)
		return l, nil
	}
	link, err := w.deps.Store.GetLink(ctx, rep.LinkKey)
	if errors.Is(err, storage.ErrNotFound) {
		l.Decision, l.Note = "new", fmt.Sprintf("No identity holds link key %q yet: a sign-in would create the link to this subject.", rep.LinkKey)
		return l, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading link %q: %w", rep.LinkKey, err)
	}
	l.Link = &link
	sub := in.UpstreamSubject
	if sub == "" {
		sub, _ = in.Claims["sub"].(string)
	}
	subject, outcome := rt.LinkedSubject(in.Connector, sub, rep.Subject, link)
	l.Decision, l.Subject = "existing", subject
	switch outcome {
	case runtime.LinkSame:
		l.Note = "The link of this key already gives this subject."
	case runtime.LinkOwn:
		l.Note = "This identity made the link: its subject is issued."
	case runtime.LinkOther:
		l.Note = fmt.Sprintf("An identity of %s holds link key %q: its subject is issued instead of the mapping's.", link.ConnectorID, rep.LinkKey)
	default:
		l.Decision = "conflict"
		l.Note = fmt.Sprintf("Link key %q is held by another identity (through %s) that this one may not share a subject with: the sign-in would be refused as a link conflict.", rep.LinkKey, link.ConnectorID)
	}
	return l, nil
}

// linkGroup returns the connectors that share subjects with connector id
// through links.groups, id first; nil when it is in none.
func linkGroup(cfg *config.Config, id string) []string {
	var out []string
	for _, g := range cfg.Links.Groups {
		if !slices.Contains(g, id) {
			continue
		}
		if out == nil {
			out = []string{id}
		}
		for _, c := range g {
			if !slices.Contains(out, c) {
				out = append(out, c)
			}
		}
	}
	return out
}

// TokenPreview is what a client's tokens would carry. Nothing is signed:
// registered claims the broker makes at issue time (jti, sid) are shown
// as placeholders.
type TokenPreview struct {
	Client string   `json:"client"`
	Scopes []string `json:"scopes"`
	// IDToken is nil without the openid scope: no ID token is issued.
	IDToken     *TokenClaims `json:"id_token,omitempty"`
	AccessToken *TokenClaims `json:"access_token"`
	// Warnings are what would stop or change a real sign-in: a scope the
	// client may not ask for, a connector it does not offer, a subject its
	// platform refuses.
	Warnings []string `json:"warnings,omitempty"`
}

// TokenClaims are one token's claims.
type TokenClaims struct {
	// Claims is the token's payload as the client would decode it.
	Claims map[string]any `json:"claims"`
	// Withheld are the mapped claims of this token that the scopes do not
	// release, with the reason.
	Withheld map[string]string `json:"withheld,omitempty"`
}

// JSON is the payload, indented.
func (t *TokenClaims) JSON() string {
	b, _ := json.MarshalIndent(t.Claims, "", "  ")
	return string(b)
}

func (w *Workbench) preview(req Request, rep runtime.MappingReport, subject string) (*TokenPreview, error) {
	rt := w.deps.Runtime()
	cl, ok := rt.Client(req.Client)
	if !ok {
		return nil, fmt.Errorf("no client %q in the running configuration", req.Client)
	}
	scopes := dedupe(req.Scopes)
	tp := &TokenPreview{Client: cl.ID, Scopes: scopes}
	for _, sc := range scopes {
		if !cl.AllowsScope(sc) {
			tp.Warnings = append(tp.Warnings, fmt.Sprintf("client %s may not ask for scope %q: /authorize refuses the request (invalid_scope)", cl.ID, sc))
		}
	}
	if !slices.Contains(scopes, "openid") {
		tp.Warnings = append(tp.Warnings, "without the openid scope /authorize refuses the request, and no ID token is issued")
	}
	if !req.Target.Workload && !cl.AllowsConnector(req.Target.ID) {
		tp.Warnings = append(tp.Warnings, fmt.Sprintf("client %s does not offer connector %s (its connectors list)", cl.ID, req.Target.ID))
	}
	if msg := config.SubjectProblem(cl.Profile, subject); msg != "" {
		tp.Warnings = append(tp.Warnings, "tokens would be refused: "+msg)
	}
	now := w.deps.Now()
	scope := strings.Join(scopes, " ")
	at := map[string]any{
		"iss": w.deps.Issuer, "sub": subject, "client_id": cl.ID,
		"iat": now.Unix(), "exp": now.Add(cl.AccessTokenTTL).Unix(),
		"jti": "(random at issue)", "auth_time": now.Unix(), "sid": "(the session's id)",
	}
	if len(cl.Audiences) == 1 {
		at["aud"] = cl.Audiences[0]
	} else {
		at["aud"] = anyList(cl.Audiences)
	}
	if scope != "" {
		at["scope"] = scope
	}
	tp.AccessToken = tokenClaims(at, rep.AccessToken, scopes, cl)
	if slices.Contains(scopes, "openid") {
		id := map[string]any{
			"iss": w.deps.Issuer, "sub": subject, "aud": cl.ID, "azp": cl.ID,
			"iat": now.Unix(), "exp": now.Add(cl.IDTokenTTL).Unix(), "auth_time": now.Unix(),
			"sid": "(the session's id)", "at_hash": "(hash of the access token)",
		}
		if req.Target.Workload {
			delete(id, "sid")
		}
		tp.IDToken = tokenClaims(id, rep.IDToken, scopes, cl)
	}
	return tp, nil
}

// tokenClaims merges the released mapped claims into the registered ones
// (tokens.Releasable: the filter tokens are minted with) and notes what
// the scopes withhold.
func tokenClaims(registered, mapped map[string]any, scopes []string, cl *runtime.Client) *TokenClaims {
	tc := &TokenClaims{Claims: registered}
	released := tokens.Releasable(mapped, scopes)
	for k, v := range released {
		tc.Claims[k] = v
	}
	for k := range mapped {
		if _, ok := released[k]; ok {
			continue
		}
		if tc.Withheld == nil {
			tc.Withheld = map[string]string{}
		}
		if need := scopeFor(k, scopes); need != "" {
			tc.Withheld[k] = fmt.Sprintf("needs the %s scope, which was not asked for", need)
			if !cl.AllowsScope(need) {
				tc.Withheld[k] += fmt.Sprintf(", and client %s may not ask for it (its scopes list)", cl.ID)
			}
		} else {
			tc.Withheld[k] = "the broker sets this claim itself"
		}
	}
	return tc
}

// scopeFor returns the scope that would release claim k, which scopes do
// not: asked of tokens.Releasable, so that it cannot differ from minting.
func scopeFor(k string, scopes []string) string {
	for _, s := range []string{"profile", "email", "groups", "openid", "address", "phone"} {
		if slices.Contains(scopes, s) {
			continue
		}
		if _, ok := tokens.Releasable(map[string]any{k: true}, append(slices.Clip(scopes), s))[k]; ok {
			return s
		}
	}
	return ""
}

func anyList(xs []string) []any {
	out := make([]any, len(xs))
	for i, x := range xs {
		out[i] = x
	}
	return out
}

func dedupe(xs []string) []string {
	var out []string
	for _, x := range xs {
		if x != "" && !slices.Contains(out, x) {
			out = append(out, x)
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// jsonText renders v as compact JSON.
func jsonText(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}
