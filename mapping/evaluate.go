package mapping

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"
)

// maxSubjectBytes is the longest subject or link key an expression may
// produce (OpenID Connect caps sub at 255 ASCII characters).
const maxSubjectBytes = 255

// Input is one upstream identity to map.
type Input struct {
	ConnectorID, ConnectorType, UpstreamSubject string
	// Claims are the upstream claims as JSON values, numbers as float64
	// (Compile refuses arithmetic only an int claim could take part in);
	// SAML attributes are lists. Reached as `claims`.
	Claims map[string]any
	// Sources is extra data the connector fetched (Graph groups, say), as
	// JSON values too. Reached as `sources`.
	Sources map[string]any
}

// Result is what a mapping decided. Claim values are JSON-ready: string,
// bool, int64, float64, []any, map[string]any.
type Result struct {
	// Subject is the internal subject before linking.
	Subject string
	// LinkKey is empty when the mapping declares no link or the link
	// expression gave null or "".
	LinkKey     string
	IDToken     map[string]any
	AccessToken map[string]any
}

// Rejection is returned when a require rule is false. Message is the
// admin's text, meant for the person signing in.
type Rejection struct {
	Rule          int
	Expr, Message string
}

func (r *Rejection) Error() string {
	return fmt.Sprintf("mapping: require[%d] %q is false: %s", r.Rule, r.Expr, r.Message)
}

// EvalError is a run-time failure of one expression: a missing key, a
// wrong type, the cost limit, an oversized output. It is for the admin's
// log; the person should see a generic rejection.
type EvalError struct {
	Path, Expr string
	Err        error
}

func (e *EvalError) Error() string {
	return fmt.Sprintf("mapping: %s: %q: %v", e.Path, e.Expr, e.Err)
}

func (e *EvalError) Unwrap() error { return e.Err }

// ErrOutputTooLarge is wrapped by the EvalError returned when the issued
// claims exceed CompileOptions.MaxOutputBytes.
var ErrOutputTooLarge = errors.New("claims exceed the output size limit")

// Step is one evaluated expression, for explaining a mapping.
type Step struct {
	Path  string `json:"path"`
	Expr  string `json:"expr"`
	Value any    `json:"value"`
	Err   string `json:"error,omitempty"`
}

// Evaluate runs the mapping on one identity. It returns a *Rejection when a
// require rule is false and an *EvalError when an expression fails; it
// never panics on hostile claims. It stops at the first failure.
func (m *Mapping) Evaluate(ctx context.Context, in Input) (Result, error) {
	return m.run(ctx, in, nil)
}

// Explain evaluates every expression, even after a failure, and returns
// each one's value in order (requires, subject, link, claims by name). The
// error is the one Evaluate would return; with an error the Result holds
// whatever could still be computed and must not be issued.
func (m *Mapping) Explain(ctx context.Context, in Input) (Result, []Step, error) {
	var steps []Step
	res, err := m.run(ctx, in, &steps)
	return res, steps, err
}

func (m *Mapping) run(ctx context.Context, in Input, steps *[]Step) (Result, error) {
	act, err := newActivation(in, &m.connector)
	if err != nil {
		return Result{}, &EvalError{Path: "input", Err: err}
	}
	var first error
	fail := func(err error) bool {
		if first == nil {
			first = err
		}
		return steps == nil
	}
	record := func(c *compiled, v any, err error) {
		if steps == nil {
			return
		}
		s := Step{Path: c.path, Expr: c.expr, Value: v}
		if err != nil {
			s.Err = err.Error()
		}
		*steps = append(*steps, s)
	}

	for i, r := range m.require {
		v, err := m.eval(ctx, &r.compiled, act)
		if err == nil {
			b, ok := v.(types.Bool)
			switch {
			case !ok:
				err = &EvalError{Path: r.path, Expr: r.expr, Err: fmt.Errorf("result is %s, want bool", v.Type().TypeName())}
			case !bool(b):
				record(&r.compiled, false, nil)
				if fail(&Rejection{Rule: i, Expr: r.expr, Message: r.message}) {
					return Result{}, first
				}
				continue
			}
		}
		if err != nil {
			record(&r.compiled, nil, err)
			if fail(err) {
				return Result{}, first
			}
			continue
		}
		record(&r.compiled, true, nil)
	}

	var res Result
	if m.subject == nil {
		res.Subject = DefaultSubject(in.ConnectorID, in.UpstreamSubject)
	} else {
		s, err := m.evalString(ctx, m.subject, act)
		if err == nil && s == "" {
			err = &EvalError{Path: m.subject.path, Expr: m.subject.expr, Err: errors.New("subject is empty")}
		}
		record(m.subject, s, err)
		if err != nil && fail(err) {
			return Result{}, first
		}
		res.Subject = s
	}
	if m.link != nil {
		s, err := m.evalString(ctx, m.link, act)
		record(m.link, s, err)
		if err != nil && fail(err) {
			return Result{}, first
		}
		res.LinkKey = s
	}

	res.IDToken, res.AccessToken = make(map[string]any, len(m.claims)), make(map[string]any, len(m.claims))
	// Each token's JSON size (an upper bound, see jsonSize) is summed as
	// its claims are added: each value is measured once, even when both
	// tokens carry it.
	idSize, atSize := 2, 2
	for i := range m.claims {
		c := &m.claims[i]
		v, err := m.eval(ctx, &c.compiled, act)
		var out any
		var keep bool
		if err == nil {
			out, keep, err = toJSON(v, 0)
			if err != nil {
				err = &EvalError{Path: c.path, Expr: c.expr, Err: err}
			}
		}
		record(&c.compiled, out, err)
		if err != nil {
			if fail(err) {
				return Result{}, first
			}
			continue
		}
		if !keep {
			continue
		}
		size := quotedSize(c.name) + 2 + jsonSize(out, m.opts.MaxOutputBytes)
		if c.idTok {
			res.IDToken[c.name] = out
			idSize += size
		}
		if c.accTok {
			res.AccessToken[c.name] = out
			atSize += size
		}
	}
	if first == nil && max(idSize, atSize) > m.opts.MaxOutputBytes {
		first = &EvalError{Path: "claims", Err: fmt.Errorf("%w: over %d bytes", ErrOutputTooLarge, m.opts.MaxOutputBytes)}
	}
	if first != nil {
		if steps != nil {
			return res, first // what could be computed, for explaining
		}
		return Result{}, first
	}
	return res, nil
}

// jsonSize returns an upper bound of the JSON encoding size of v, a value
// made by toJSON. It stops counting once the total passes limit.
func jsonSize(v any, limit int) int {
	switch x := v.(type) {
	case string:
		return quotedSize(x)
	case bool, nil:
		return 5
	case int64, float64:
		return 24
	case []any:
		n := 2
		for _, e := range x {
			if n += jsonSize(e, limit) + 1; n > limit {
				return n
			}
		}
		return n
	case map[string]any:
		n := 2
		for k, e := range x {
			if n += quotedSize(k) + 2 + jsonSize(e, limit); n > limit {
				return n
			}
		}
		return n
	}
	return limit + 1
}

// quotedSize bounds the size of s as a JSON string: two quotes, and at
// most six bytes for each byte that needs escaping.
func quotedSize(s string) int {
	n := len(s) + 2
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' || c >= 0x80 {
			n += 5
		}
	}
	return n
}

// eval runs one program, turning panics and CEL errors into *EvalError.
func (m *Mapping) eval(ctx context.Context, c *compiled, act cel.Activation) (v ref.Val, err error) {
	defer func() {
		if p := recover(); p != nil {
			v, err = nil, &EvalError{Path: c.path, Expr: c.expr, Err: fmt.Errorf("evaluation panicked: %v", p)}
		}
	}()
	if err := ctx.Err(); err != nil {
		return nil, &EvalError{Path: c.path, Expr: c.expr, Err: err}
	}
	var out ref.Val
	// A context that can never be cancelled (Done is nil) has nothing to
	// interrupt: watching it would only cost a cancellable child context
	// per evaluation.
	if c.loops && ctx.Done() != nil {
		out, _, err = c.prg.ContextEval(ctx, act)
	} else {
		out, _, err = c.prg.Eval(act)
	}
	if err != nil {
		return nil, &EvalError{Path: c.path, Expr: c.expr, Err: err}
	}
	return out, nil
}

// evalString evaluates a subject or link expression: a string, or null or
// an empty optional for "".
func (m *Mapping) evalString(ctx context.Context, c *compiled, act cel.Activation) (string, error) {
	v, err := m.eval(ctx, c, act)
	if err != nil {
		return "", err
	}
	if o, ok := v.(*types.Optional); ok {
		if !o.HasValue() {
			return "", nil
		}
		v = o.GetValue()
	}
	switch x := v.(type) {
	case types.Null:
		return "", nil
	case types.String:
		if len(x) > maxSubjectBytes {
			return "", &EvalError{Path: c.path, Expr: c.expr, Err: fmt.Errorf("result is %d bytes, limit %d", len(x), maxSubjectBytes)}
		}
		return string(x), nil
	}
	return "", &EvalError{Path: c.path, Expr: c.expr, Err: fmt.Errorf("result is %s, want string", v.Type().TypeName())}
}

// maxDepth bounds the nesting of an issued claim value.
const maxDepth = 16

// toJSON converts a CEL value to a JSON-ready Go value. keep is false for
// null and an empty optional at the top level, which drop the claim.
func toJSON(v ref.Val, depth int) (out any, keep bool, err error) {
	if depth > maxDepth {
		return nil, false, fmt.Errorf("value nested deeper than %d", maxDepth)
	}
	switch x := v.(type) {
	case *types.Optional:
		if !x.HasValue() {
			return nil, false, nil
		}
		return toJSON(x.GetValue(), depth)
	case types.Null:
		return nil, false, nil
	case types.Bool:
		return bool(x), true, nil
	case types.String:
		return string(x), true, nil
	case types.Int:
		return int64(x), true, nil
	case types.Uint:
		if uint64(x) > math.MaxInt64 {
			return float64(x), true, nil
		}
		return int64(x), true, nil
	case types.Double:
		f := float64(x)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, false, fmt.Errorf("result %v is not a JSON number", f)
		}
		return f, true, nil
	case traits.Lister:
		n, _ := x.Size().(types.Int)
		out := make([]any, 0, max(int(n), 0))
		for it := x.Iterator(); it.HasNext() == types.True; {
			e, _, err := toJSON(it.Next(), depth+1)
			if err != nil {
				return nil, false, err
			}
			out = append(out, e)
		}
		return out, true, nil
	case traits.Mapper:
		out := map[string]any{}
		for it := x.Iterator(); it.HasNext() == types.True; {
			k := it.Next()
			ks, ok := k.(types.String)
			if !ok {
				return nil, false, fmt.Errorf("map key is %s, want string", k.Type().TypeName())
			}
			e, _, err := toJSON(x.Get(k), depth+1)
			if err != nil {
				return nil, false, err
			}
			out[string(ks)] = e
		}
		return out, true, nil
	}
	return nil, false, fmt.Errorf("result of type %s cannot be a claim", v.Type().TypeName())
}
