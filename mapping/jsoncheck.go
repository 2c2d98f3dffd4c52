package mapping

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/decls"
	"github.com/google/cel-go/common/operators"
	"github.com/google/cel-go/common/types"
)

// The claims and sources variables are declared map(string, dyn): the
// mapping does not know which connector type will use it, and the same
// claim name has different shapes upstream (email is a string from OpenID
// Connect and a list from SAML; some providers send email_verified as the
// string "true"). Declaring claim types would refuse correct expressions.
//
// What every connector does guarantee is that claims and sources are
// decoded JSON: a value read from them is a string, a number (always a
// double), a bool, a list, a map or null, never an int, uint, bytes,
// timestamp or duration. The check below uses that fact and nothing more.
// For arithmetic (+ - * / %), whose run-time dispatch is exactly its
// declared overloads (CEL has no implicit numeric conversion), it takes the
// overloads the type checker kept for the call and refuses the call when
// none of them accepts a JSON value in a position fed straight from claims
// or sources. Such an expression fails at run time for every input, so the
// check never refuses one that could work. Comparisons and indexing are
// left alone: CEL compares and indexes across number types at run time.

// arithmetic are the operators the check applies to.
var arithmetic = map[string]bool{
	operators.Add: true, operators.Subtract: true, operators.Multiply: true,
	operators.Divide: true, operators.Modulo: true,
}

// jsonKind reports whether a parameter of type t accepts some JSON value.
func jsonKind(t *types.Type) bool {
	switch t.Kind() {
	case types.DynKind, types.AnyKind, types.TypeParamKind, types.StringKind, types.DoubleKind,
		types.BoolKind, types.NullTypeKind, types.ListKind, types.MapKind:
		return true
	}
	return false
}

// checkJSONArithmetic refuses arithmetic that cannot work on a value read
// from claims or sources.
func (c *compiler) checkJSONArithmetic(path, expr string, a *cel.Ast) bool {
	native := a.NativeRep()
	fns := c.env.Functions()
	ok := true
	var walk func(e ast.Expr, json map[string]bool)
	walk = func(e ast.Expr, json map[string]bool) {
		if e == nil || !ok {
			return
		}
		switch e.Kind() {
		case ast.CallKind:
			call := e.AsCall()
			if call.IsMemberFunction() {
				walk(call.Target(), json)
			}
			for _, x := range call.Args() {
				walk(x, json)
			}
			if arithmetic[call.FunctionName()] && len(call.Args()) == 2 {
				if msg := impossibleArithmetic(call, native.GetOverloadIDs(e.ID()), fns[call.FunctionName()], json); msg != "" {
					c.errs = append(c.errs, problemAt(path, expr, native.SourceInfo().GetStartLocation(e.ID()), msg))
					ok = false
				}
			}
		case ast.SelectKind:
			walk(e.AsSelect().Operand(), json)
		case ast.ListKind:
			for _, x := range e.AsList().Elements() {
				walk(x, json)
			}
		case ast.MapKind:
			for _, en := range e.AsMap().Entries() {
				walk(en.AsMapEntry().Key(), json)
				walk(en.AsMapEntry().Value(), json)
			}
		case ast.StructKind:
			for _, f := range e.AsStruct().Fields() {
				walk(f.AsStructField().Value(), json)
			}
		case ast.ComprehensionKind:
			cm := e.AsComprehension()
			walk(cm.IterRange(), json)
			walk(cm.AccuInit(), json)
			inner := scoped(json)
			rangeJSON := isJSON(cm.IterRange(), json)
			if cm.HasIterVar2() {
				// (index or key, value): an index is an int.
				inner[cm.IterVar()] = false
				inner[cm.IterVar2()] = rangeJSON
			} else {
				// A list's element, or a map's key: both JSON.
				inner[cm.IterVar()] = rangeJSON
			}
			// cel.bind(v, init, result): a loop over an empty list whose
			// accumulator stays init.
			accu := false
			if r := cm.IterRange(); r.Kind() == ast.ListKind && len(r.AsList().Elements()) == 0 {
				accu = isJSON(cm.AccuInit(), json)
			}
			inner[cm.AccuVar()] = accu
			walk(cm.LoopCondition(), inner)
			walk(cm.LoopStep(), inner)
			res := scoped(json)
			res[cm.AccuVar()] = accu
			walk(cm.Result(), res)
		}
	}
	walk(native.Expr(), map[string]bool{varClaims: true, varSources: true})
	return ok
}

func scoped(outer map[string]bool) map[string]bool {
	m := make(map[string]bool, len(outer)+2)
	for k, v := range outer {
		m[k] = v
	}
	return m
}

// isJSON reports whether e's value is read straight from claims or sources
// (or from a variable holding such a value): claims.x, claims["x"].y[0].
func isJSON(e ast.Expr, json map[string]bool) bool {
	switch e.Kind() {
	case ast.IdentKind:
		return json[e.AsIdent()]
	case ast.SelectKind:
		return !e.AsSelect().IsTestOnly() && isJSON(e.AsSelect().Operand(), json)
	case ast.CallKind:
		call := e.AsCall()
		switch {
		case call.FunctionName() == operators.Index && len(call.Args()) == 2:
			return isJSON(call.Args()[0], json)
		case call.FunctionName() == "dyn" && len(call.Args()) == 1 && !call.IsMemberFunction():
			return isJSON(call.Args()[0], json)
		}
	}
	return false
}

// impossibleArithmetic returns why the arithmetic call cannot work, or ""
// when some overload the checker kept accepts JSON values where the call
// passes them.
func impossibleArithmetic(call ast.CallExpr, ids []string, fn *decls.FunctionDecl, json map[string]bool) string {
	args := call.Args()
	fromJSON := []bool{isJSON(args[0], json), isJSON(args[1], json)}
	if (!fromJSON[0] && !fromJSON[1]) || fn == nil || len(ids) == 0 {
		return ""
	}
	byID := map[string]*decls.OverloadDecl{}
	for _, o := range fn.OverloadDecls() {
		byID[o.ID()] = o
	}
	// The kinds the JSON side would need, for the message.
	var need []string
	seen := map[string]bool{}
	culprit := -1
	for _, id := range ids {
		o := byID[id]
		if o == nil || len(o.ArgTypes()) != 2 {
			return "" // not an overload we can reason about
		}
		fits := true
		for i, t := range o.ArgTypes() {
			if fromJSON[i] && !jsonKind(t) {
				fits = false
				if culprit < 0 {
					culprit = i
				}
				if i == culprit && !seen[t.String()] {
					seen[t.String()] = true
					need = append(need, kindName(t))
				}
			}
		}
		if fits {
			return ""
		}
	}
	if culprit < 0 {
		return ""
	}
	sort.Strings(need)
	op := operatorNames[call.FunctionName()]
	subject := render(args[culprit])
	msg := fmt.Sprintf("%q needs %s to be %s here, and a claim never is (claims hold strings, doubles, bools, lists, maps or null)", op, subject, strings.Join(need, " or "))
	other := args[1-culprit]
	lit, isInt := intLiteral(other)
	switch {
	case op == "%":
		return msg + fmt.Sprintf(`: "%%" works on ints only, so convert first: int(%s) %% %s`, subject, render(other))
	case len(need) == 1 && need[0] == "an int" && isInt && op == "+":
		return msg + fmt.Sprintf(": write %s.0 to compute with a number, or string(%s) to join text", lit, lit)
	case len(need) == 1 && need[0] == "an int" && isInt:
		return msg + fmt.Sprintf(": write %s.0 to compute with a number", lit)
	case len(need) == 1 && (need[0] == "an int" || need[0] == "an unsigned int"):
		return msg + ": convert one side, with double(...) or int(...)"
	case strings.Contains(strings.Join(need, " "), "timestamp"):
		return msg + fmt.Sprintf(": convert it first, e.g. timestamp(%s)", subject)
	}
	return msg + ": convert it first"
}

func kindName(t *types.Type) string {
	switch t.Kind() {
	case types.IntKind:
		return "an int"
	case types.UintKind:
		return "an unsigned int"
	case types.BytesKind:
		return "bytes"
	case types.TimestampKind:
		return "a timestamp"
	case types.DurationKind:
		return "a duration"
	}
	return article(t.String())
}

func intLiteral(e ast.Expr) (string, bool) {
	if e.Kind() != ast.LiteralKind {
		return "", false
	}
	if i, ok := e.AsLiteral().(types.Int); ok {
		return strconv.FormatInt(int64(i), 10), true
	}
	return "", false
}

// render writes a simple expression back as CEL: names, field selections,
// constant indexes and literals; anything else is "this value".
func render(e ast.Expr) string {
	switch e.Kind() {
	case ast.IdentKind:
		return e.AsIdent()
	case ast.SelectKind:
		if op := render(e.AsSelect().Operand()); op != "this value" {
			return op + "." + e.AsSelect().FieldName()
		}
	case ast.LiteralKind:
		switch v := e.AsLiteral().(type) {
		case types.String:
			return strconv.Quote(string(v))
		case types.Int:
			return strconv.FormatInt(int64(v), 10)
		case types.Double:
			return strconv.FormatFloat(float64(v), 'g', -1, 64)
		}
	case ast.CallKind:
		call := e.AsCall()
		if call.FunctionName() == operators.Index && len(call.Args()) == 2 {
			if op, idx := render(call.Args()[0]), render(call.Args()[1]); op != "this value" && idx != "this value" {
				return op + "[" + idx + "]"
			}
		}
	}
	return "this value"
}
