package mapping

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common"
	"github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/operators"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/traits"

	"github.com/fedbroker/fedbroker/problem"
)

// Defaults for CompileOptions fields left zero.
const (
	// DefaultMaxCost is the run-time cost limit of one expression.
	DefaultMaxCost = 1_000_000
	// DefaultMaxOutputBytes caps the JSON size of all issued claims.
	DefaultMaxOutputBytes = 64 << 10
	// estimateFactor is how far the compile-time worst case, computed with
	// every claim list, map or string as large as sizeHint, may exceed
	// MaxCost before the expression is refused.
	estimateFactor = 100
)

// reservedClaims are registered claims the broker sets itself; a mapping
// that tries to set one does not compile.
var reservedClaims = map[string]bool{
	"iss": true, "sub": true, "aud": true, "exp": true, "iat": true, "nbf": true,
	"jti": true, "auth_time": true, "nonce": true, "azp": true, "at_hash": true,
	"c_hash": true, "sid": true, "amr": true, "acr": true, "scope": true,
	"client_id": true, "act": true, "cnf": true, "typ": true,
	// fb_fam names the refresh family an access token descends from, for
	// revocation.
	"fb_fam": true,
}

// IsReservedClaim reports whether name is a claim the broker sets itself.
func IsReservedClaim(name string) bool { return reservedClaims[name] }

// CompileOptions bound evaluation. Zero fields take the defaults.
type CompileOptions struct {
	// MaxCost bounds the CEL cost of each expression. The compile-time
	// worst case assumes every claim list, map and string has 10,000
	// elements and every value nested in a claim 4,096; Evaluate refuses
	// inputs beyond those bounds. An expression whose worst case exceeds
	// 100 × MaxCost is refused at compile time; one whose worst case
	// exceeds MaxCost runs under a run-time cost limit of MaxCost.
	MaxCost uint64
	// MaxOutputBytes caps the JSON size of the claims one evaluation issues.
	MaxOutputBytes int
}

func (o CompileOptions) withDefaults() CompileOptions {
	if o.MaxCost == 0 {
		o.MaxCost = DefaultMaxCost
	}
	if o.MaxOutputBytes <= 0 {
		o.MaxOutputBytes = DefaultMaxOutputBytes
	}
	return o
}

// Token selectors for ClaimSpec.In.
const (
	InBoth        = "both"
	InIDToken     = "id_token"
	InAccessToken = "access_token"
)

// Mapping is a compiled Spec. It is immutable and safe for concurrent use.
type Mapping struct {
	opts    CompileOptions
	require []compiledRule
	subject *compiled // nil: DefaultSubject
	link    *compiled // nil: no link key
	claims  []compiledClaim
	// connector is the `connector` value of the last evaluation.
	connector atomic.Pointer[connectorValue]
}

type compiled struct {
	path, expr string
	prg        cel.Program
	// loops: the expression has a comprehension, so it watches the
	// context; tracked: it runs under a run-time cost limit.
	loops, tracked bool
}

type compiledRule struct {
	compiled
	message string
}

type compiledClaim struct {
	compiled
	name          string
	idTok, accTok bool
}

// Compile parses and type-checks every expression of spec and returns
// every problem at once. Each problem's Path is relative to the mapping
// ("require[1].expr", "claims.groups", "link"; empty for the mapping as a
// whole). A CEL error's Message says in words what is wrong, where in the
// expression ("column 7: ", or "line 2 of the expression, column 3: ") and
// ends with the expression (in "..."), or for a long one the part around
// the position (near "..."). Besides CEL's type check, arithmetic that no
// JSON value read from claims or sources can take part in is refused (see
// checkJSONArithmetic). A nil Mapping is returned whenever there are
// problems.
func Compile(spec Spec, opts CompileOptions) (*Mapping, []problem.Problem) {
	opts = opts.withDefaults()
	c := &compiler{opts: opts}
	tables := c.tables(spec.Tables)
	env, err := newEnv(tables)
	if err != nil {
		return nil, []problem.Problem{{Path: "", Message: fmt.Sprintf("cel environment: %v", err)}}
	}
	c.env = env
	m := &Mapping{opts: opts}
	for i, r := range spec.Require {
		p := fmt.Sprintf("require[%d]", i)
		if strings.TrimSpace(r.Message) == "" {
			c.errf(p+".message", "a message is required: it is what the person sees when the rule rejects them")
		}
		if cp, a := c.compile(p+".expr", r.Expr, tables); cp != nil {
			if !a.OutputType().IsExactType(types.BoolType) && !a.OutputType().IsExactType(types.DynType) {
				c.errf(p+".expr", "expression %q has type %s, want bool", r.Expr, a.OutputType())
			} else {
				m.require = append(m.require, compiledRule{compiled: *cp, message: r.Message})
			}
		}
	}
	if strings.TrimSpace(spec.Subject) != "" {
		if cp, a := c.compile("subject", spec.Subject, tables); cp != nil && c.stringish("subject", spec.Subject, a) {
			m.subject = cp
		}
	}
	if strings.TrimSpace(spec.Link) != "" {
		if cp, a := c.compile("link", spec.Link, tables); cp != nil && c.stringish("link", spec.Link, a) {
			if !spec.AllowUnverifiedEmailLink {
				c.checkLinkEmail(spec.Link, a)
			}
			m.link = cp
		}
	}
	names := make([]string, 0, len(spec.Claims))
	for n := range spec.Claims {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		cs := spec.Claims[n]
		p := "claims." + n
		if strings.TrimSpace(n) == "" {
			c.errf(p, "claim name is empty")
			continue
		}
		if reservedClaims[n] {
			c.errf(p, "%q is a registered claim the broker sets itself; a mapping cannot set it", n)
			continue
		}
		cc := compiledClaim{name: n}
		switch cs.In {
		case "", InBoth:
			cc.idTok, cc.accTok = true, true
		case InIDToken:
			cc.idTok = true
		case InAccessToken:
			cc.accTok = true
		default:
			c.errf(p+".in", "%q is not one of both, id_token, access_token", cs.In)
			continue
		}
		if cp, _ := c.compile(p, cs.Expr, tables); cp != nil {
			cc.compiled = *cp
			m.claims = append(m.claims, cc)
		}
	}
	if len(c.errs) > 0 {
		return nil, c.errs
	}
	return m, nil
}

type compiler struct {
	env  *cel.Env
	opts CompileOptions
	errs []problem.Problem
}

func (c *compiler) errf(path, format string, args ...any) {
	c.errs = append(c.errs, problem.Problem{Path: path, Message: fmt.Sprintf(format, args...)})
}

// tables converts the spec's tables to CEL maps.
func (c *compiler) tables(in map[string]map[string]any) map[string]traits.Mapper {
	out := make(map[string]traits.Mapper, len(in))
	for name, t := range in {
		if name == "" {
			c.errf("tables", "table name is empty")
			continue
		}
		v := types.DefaultTypeAdapter.NativeToValue(normalizeYAML(t))
		m, ok := v.(traits.Mapper)
		if !ok || types.IsError(v) {
			c.errf("tables."+name, "table is not a map of string to values: %v", v)
			continue
		}
		out[name] = m
	}
	return out
}

// normalizeYAML turns map[any]any (older YAML decoders) into
// map[string]any, recursively.
func normalizeYAML(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = normalizeYAML(e)
		}
		return out
	case map[any]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[fmt.Sprint(k)] = normalizeYAML(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = normalizeYAML(e)
		}
		return out
	}
	return v
}

// compile parses, checks, cost-bounds and plans one expression. It records
// errors and returns nil on failure.
func (c *compiler) compile(path, expr string, tables map[string]traits.Mapper) (*compiled, *cel.Ast) {
	if strings.TrimSpace(expr) == "" {
		c.errf(path, "expression is empty")
		return nil, nil
	}
	a, iss := c.env.Compile(expr)
	if iss != nil && iss.Err() != nil {
		for _, msg := range describeIssues(expr, iss.Errors()) {
			c.errs = append(c.errs, problem.Problem{Path: path, Message: msg})
		}
		return nil, nil
	}
	ok := c.checkLookups(path, expr, a, tables)
	if !c.checkNesting(path, expr, a) || !c.checkJSONArithmetic(path, expr, a) || !c.checkMapKeys(path, expr, a) {
		return nil, nil
	}
	est, err := c.env.EstimateCost(a, sizeEstimator{})
	if err != nil {
		c.errf(path, "cost estimate of %q: %v", expr, err)
		return nil, nil
	}
	if limit := c.opts.MaxCost * estimateFactor; est.Max > limit {
		c.errf(path, "expression %q may cost up to %d with 10,000-element claims (limit %d): avoid nested loops over claim lists", expr, est.Max, limit)
		return nil, nil
	}
	if !ok {
		return nil, nil
	}
	// An expression whose worst case already fits MaxCost (inputs are held
	// to the size hints at run time) runs without cost tracking, which
	// costs as much as the evaluation itself; any other one runs under a
	// run-time limit of MaxCost.
	var popts []cel.ProgramOption
	tracked := est.Max > c.opts.MaxCost
	if tracked {
		popts = append(popts, cel.CostLimit(c.opts.MaxCost), costTrackerOptions())
	} else {
		popts = append(popts, cel.EvalOptions(cel.OptOptimize))
	}
	loops := hasComprehension(a.NativeRep().Expr())
	if loops {
		popts = append(popts, cel.InterruptCheckFrequency(100))
	}
	prg, err := program(c.env, a, popts)
	if err != nil {
		c.errf(path, "program for %q: %v", expr, err)
		return nil, nil
	}
	return &compiled{path: path, expr: expr, prg: prg, loops: loops, tracked: tracked}, a
}

// checkNesting refuses a loop over data nested inside another loop: with
// claim lists of 10,000 elements that is 100 million steps. A nested loop
// over a literal list (`["a", "b"].exists(p, g.startsWith(p))`) is fine.
func (c *compiler) checkNesting(path, expr string, a *cel.Ast) bool {
	ok := true
	visit(a.NativeRep().Expr(), func(e ast.Expr) {
		if e.Kind() != ast.ComprehensionKind || !ok {
			return
		}
		cm := e.AsComprehension()
		for _, body := range []ast.Expr{cm.LoopCondition(), cm.LoopStep()} {
			visit(body, func(in ast.Expr) {
				if !ok || in.Kind() != ast.ComprehensionKind || in.AsComprehension().IterRange().Kind() == ast.ListKind {
					return
				}
				loc := a.NativeRep().SourceInfo().GetStartLocation(in.ID())
				c.errs = append(c.errs, problemAt(path, expr, loc, "a loop over data inside another loop is not allowed"))
				ok = false
			})
		}
	})
	return ok
}

func hasComprehension(e ast.Expr) bool {
	found := false
	visit(e, func(x ast.Expr) {
		if x.Kind() == ast.ComprehensionKind {
			found = true
		}
	})
	return found
}

func (c *compiler) stringish(path, expr string, a *cel.Ast) bool {
	t := a.OutputType()
	if t.IsExactType(types.StringType) || t.IsExactType(types.DynType) || t.IsExactType(types.NewOptionalType(types.StringType)) || t.IsExactType(types.NewOptionalType(types.DynType)) {
		return true
	}
	c.errf(path, "expression %q has type %s, want string", expr, t)
	return false
}

// checkLookups requires every lookup() call to name a declared table with
// a constant string.
func (c *compiler) checkLookups(path, expr string, a *cel.Ast, tables map[string]traits.Mapper) bool {
	ok := true
	visit(a.NativeRep().Expr(), func(e ast.Expr) {
		if e.Kind() != ast.CallKind || e.AsCall().FunctionName() != fnLookup {
			return
		}
		args := e.AsCall().Args()
		if len(args) != 2 {
			return
		}
		// At the function's name rather than its "(".
		at := celPos(a.NativeRep().SourceInfo().GetStartLocation(e.ID()))
		if p, found := funcNameAt(newSourceText(expr), at, fnLookup); found {
			at = p
		}
		name, isConst := constString(args[0])
		switch {
		case !isConst:
			c.errf(path, "%s", positioned(expr, at, "lookup table name must be a string literal"))
			ok = false
		case tables[name] == nil:
			c.errf(path, "%s", positioned(expr, at, fmt.Sprintf("lookup of undeclared table %q%s", name, tableHint(tables))))
			ok = false
		}
	})
	return ok
}

// problemAt is a problem of expr at a cel-go location.
func problemAt(path, expr string, loc common.Location, msg string) problem.Problem {
	return problem.Problem{Path: path, Message: positioned(expr, celPos(loc), msg)}
}

// tableHint names the tables a mapping has, for a lookup of another one.
func tableHint(tables map[string]traits.Mapper) string {
	if len(tables) == 0 {
		return ": this mapping has no tables"
	}
	names := make([]string, 0, len(tables))
	for n := range tables {
		names = append(names, strconv.Quote(n))
	}
	sort.Strings(names)
	return "; this mapping's tables are " + strings.Join(names, ", ")
}

// checkLinkEmail refuses a link expression that reads claims.email without
// reading claims.email_verified, or that reads claims by a computed key (it
// could then read email without saying so).
func (c *compiler) checkLinkEmail(expr string, a *cel.Ast) {
	fields, dynamic := claimFields(a.NativeRep().Expr())
	if dynamic {
		c.errf("link", "link %q reads claims by a computed key or as a whole; name each claim (claims.x or claims[\"x\"]) or set allow_unverified_email_link", expr)
		return
	}
	if fields["email"] && !fields["email_verified"] {
		c.errf("link", "link %q reads claims.email without claims.email_verified: a key from an unverified email must never link (check claims.email_verified, or set allow_unverified_email_link)", expr)
	}
}

// claimFields returns the names read from the claims variable with constant
// field or index access, and whether claims is used any other way.
func claimFields(root ast.Expr) (map[string]bool, bool) {
	fields := map[string]bool{}
	dynamic := false
	used := map[int64]bool{} // ids of claims idents consumed by a constant access
	visit(root, func(e ast.Expr) {
		var operand ast.Expr
		var name string
		var isConst bool
		switch e.Kind() {
		case ast.SelectKind:
			operand, name, isConst = e.AsSelect().Operand(), e.AsSelect().FieldName(), true
		case ast.CallKind:
			call := e.AsCall()
			fn := call.FunctionName()
			if (fn == operators.Index || fn == operators.OptIndex || fn == operators.OptSelect) && len(call.Args()) == 2 {
				operand = call.Args()[0]
				name, isConst = constString(call.Args()[1])
			}
		}
		if operand != nil && isIdent(operand, varClaims) {
			used[operand.ID()] = true
			if isConst {
				fields[name] = true
			} else {
				dynamic = true
			}
		}
	})
	visit(root, func(e ast.Expr) {
		if isIdent(e, varClaims) && !used[e.ID()] {
			dynamic = true
		}
	})
	return fields, dynamic
}

func isIdent(e ast.Expr, name string) bool {
	return e.Kind() == ast.IdentKind && e.AsIdent() == name
}

func constString(e ast.Expr) (string, bool) {
	if e.Kind() != ast.LiteralKind {
		return "", false
	}
	s, ok := e.AsLiteral().(types.String)
	return string(s), ok
}

// visit calls f on every node of the expression tree, parents first.
func visit(e ast.Expr, f func(ast.Expr)) {
	if e == nil {
		return
	}
	f(e)
	switch e.Kind() {
	case ast.CallKind:
		c := e.AsCall()
		if c.IsMemberFunction() {
			visit(c.Target(), f)
		}
		for _, a := range c.Args() {
			visit(a, f)
		}
	case ast.SelectKind:
		visit(e.AsSelect().Operand(), f)
	case ast.ListKind:
		for _, x := range e.AsList().Elements() {
			visit(x, f)
		}
	case ast.MapKind:
		for _, en := range e.AsMap().Entries() {
			me := en.AsMapEntry()
			visit(me.Key(), f)
			visit(me.Value(), f)
		}
	case ast.StructKind:
		for _, fl := range e.AsStruct().Fields() {
			visit(fl.AsStructField().Value(), f)
		}
	case ast.ComprehensionKind:
		cm := e.AsComprehension()
		visit(cm.IterRange(), f)
		visit(cm.AccuInit(), f)
		visit(cm.LoopCondition(), f)
		visit(cm.LoopStep(), f)
		visit(cm.Result(), f)
	}
}

// program plans a checked expression. cel-go can panic while planning
// (constant folding of a literal it cannot represent); that is an error of
// the expression, never a crash of the broker at configuration load.
func program(env *cel.Env, a *cel.Ast, opts []cel.ProgramOption) (prg cel.Program, err error) {
	defer func() {
		if p := recover(); p != nil {
			prg, err = nil, fmt.Errorf("cel-go cannot plan it: %v", p)
		}
	}()
	return env.Program(a, opts...)
}
