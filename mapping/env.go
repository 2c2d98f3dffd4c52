package mapping

import (
	"fmt"
	"strings"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/checker"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"
	"github.com/google/cel-go/ext"
	"github.com/google/cel-go/interpreter"
)

// Variables every expression may read.
const (
	varClaims    = "claims"
	varConnector = "connector"
	varSources   = "sources"
)

// Function names beyond CEL's standard library and the cel-go extensions.
const (
	fnLookup       = "lookup"
	fnEmailDomain  = "emailDomain"
	fnUnion        = "sets.union"
	fnIntersection = "sets.intersection"
)

// sizeHint is the largest list, map or string the compile-time cost
// estimate assumes for any value read from claims or sources.
const sizeHint = 10000

// elemSizeHint bounds a value nested inside a claim (one group name, say).
const elemSizeHint = 4096

// maxExprLen caps the length of one expression in code points.
const maxExprLen = 16384

// newEnv returns the CEL environment for one mapping. tables are the
// mapping's lookup tables, already converted to CEL values; the lookup
// function closes over them, so each mapping has its own environment.
func newEnv(tables map[string]traits.Mapper) (*cel.Env, error) {
	lookup := func(name, key ref.Val) ref.Val {
		n, ok := name.(types.String)
		if !ok {
			return types.NewErr("lookup: table name is %s, want string", name.Type().TypeName())
		}
		t, ok := tables[string(n)]
		if !ok {
			return types.NewErr("lookup: no table %q", string(n))
		}
		k, ok := key.(types.String)
		if !ok {
			return types.NewErr("lookup: key is %s, want string", key.Type().TypeName())
		}
		v, found := t.Find(k)
		if !found {
			return types.NullValue
		}
		return v
	}
	listDyn := cel.ListType(cel.DynType)
	return cel.NewEnv(
		cel.Variable(varClaims, cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable(varConnector, cel.MapType(cel.StringType, cel.StringType)),
		cel.Variable(varSources, cel.MapType(cel.StringType, cel.DynType)),
		cel.OptionalTypes(),
		ext.Strings(),
		ext.Regex(),
		ext.Sets(),
		ext.Lists(),
		ext.Encoders(),
		ext.Bindings(),
		cel.ParserExpressionSizeLimit(maxExprLen),
		cel.ParserRecursionLimit(64),
		cel.Function(fnLookup,
			cel.Overload("lookup_string_string", []*cel.Type{cel.StringType, cel.StringType}, cel.DynType,
				cel.BinaryBinding(lookup))),
		cel.Function(fnEmailDomain,
			cel.Overload("email_domain_string", []*cel.Type{cel.StringType}, cel.StringType,
				cel.UnaryBinding(func(v ref.Val) ref.Val {
					s, ok := v.(types.String)
					if !ok {
						return types.NewErr("emailDomain: argument is %s, want string", v.Type().TypeName())
					}
					return types.String(EmailDomain(string(s)))
				}))),
		cel.Function(fnUnion,
			cel.Overload("sets_union_list_list", []*cel.Type{listDyn, listDyn}, listDyn,
				cel.BinaryBinding(func(a, b ref.Val) ref.Val { return setOp(a, b, true) }))),
		cel.Function(fnIntersection,
			cel.Overload("sets_intersection_list_list", []*cel.Type{listDyn, listDyn}, listDyn,
				cel.BinaryBinding(func(a, b ref.Val) ref.Val { return setOp(a, b, false) }))),
		cel.CostEstimatorOptions(
			checker.OverloadCostEstimate("sets_union_list_list", estimateLinear),
			checker.OverloadCostEstimate("sets_intersection_list_list", estimateLinear),
			checker.OverloadCostEstimate("email_domain_string", estimateLinear),
		),
	)
}

// costTrackerOptions charge the custom functions for their real work.
func costTrackerOptions() cel.ProgramOption {
	return cel.CostTrackerOptions(
		interpreter.OverloadCostTracker("sets_union_list_list", trackLinear),
		interpreter.OverloadCostTracker("sets_intersection_list_list", trackLinear),
		interpreter.OverloadCostTracker("email_domain_string", trackLinear),
	)
}

// EmailDomain returns the ASCII-lowercased domain of an email address, or
// "" when s is not one address with exactly one "@" and a non-empty local
// part and domain. Only ASCII letters are folded, so a non-ASCII look-alike
// (a Cyrillic "о", the Kelvin sign) never folds into an ASCII domain.
func EmailDomain(s string) string {
	at := strings.IndexByte(s, '@')
	if at <= 0 || at == len(s)-1 || strings.IndexByte(s[at+1:], '@') >= 0 {
		return ""
	}
	d := s[at+1:]
	if strings.ContainsAny(d, " \t\r\n") {
		return ""
	}
	return asciiLower(d)
}

func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// setOp returns the union (or intersection) of two lists, keeping the first
// occurrence of each element in order.
func setOp(a, b ref.Val, union bool) ref.Val {
	la, ok := a.(traits.Lister)
	if !ok {
		return types.NewErr("sets: argument is %s, want list", a.Type().TypeName())
	}
	lb, ok := b.(traits.Lister)
	if !ok {
		return types.NewErr("sets: argument is %s, want list", b.Type().TypeName())
	}
	inB := newValSet()
	for it := lb.Iterator(); it.HasNext() == types.True; {
		inB.add(it.Next())
	}
	seen := newValSet()
	var out []ref.Val
	for it := la.Iterator(); it.HasNext() == types.True; {
		v := it.Next()
		if (union || inB.has(v)) && seen.add(v) {
			out = append(out, v)
		}
	}
	if union {
		for it := lb.Iterator(); it.HasNext() == types.True; {
			if v := it.Next(); seen.add(v) {
				out = append(out, v)
			}
		}
	}
	return types.DefaultTypeAdapter.NativeToValue(out)
}

// valSet is a set of CEL values: hashed for scalars, scanned with CEL
// equality for the rest.
type valSet struct {
	keys  map[string]bool
	other []ref.Val
}

func newValSet() *valSet { return &valSet{keys: map[string]bool{}} }

func scalarKey(v ref.Val) (string, bool) {
	switch x := v.(type) {
	case types.String:
		return "s" + string(x), true
	case types.Bool:
		return fmt.Sprintf("b%t", bool(x)), true
	case types.Int:
		return fmt.Sprintf("n%d", int64(x)), true
	case types.Uint:
		return fmt.Sprintf("n%d", uint64(x)), true
	case types.Double:
		if float64(x) == float64(int64(x)) {
			return fmt.Sprintf("n%d", int64(x)), true
		}
		return fmt.Sprintf("d%v", float64(x)), true
	}
	return "", false
}

func (s *valSet) has(v ref.Val) bool {
	if k, ok := scalarKey(v); ok {
		return s.keys[k]
	}
	for _, o := range s.other {
		if o.Equal(v) == types.True {
			return true
		}
	}
	return false
}

// add inserts v and reports whether it was new.
func (s *valSet) add(v ref.Val) bool {
	if s.has(v) {
		return false
	}
	if k, ok := scalarKey(v); ok {
		s.keys[k] = true
	} else {
		s.other = append(s.other, v)
	}
	return true
}

func estimateLinear(est checker.CostEstimator, target *checker.AstNode, args []checker.AstNode) *checker.CallEstimate {
	sum := checker.CostEstimate{Min: 1, Max: 1}
	size := checker.SizeEstimate{}
	for _, a := range args {
		sz := a.ComputedSize()
		if sz == nil {
			sz = est.EstimateSize(a)
		}
		if sz == nil {
			u := checker.SizeEstimate{Min: 0, Max: sizeHint}
			sz = &u
		}
		sum = sum.Add(checker.CostEstimate{Min: sz.Min, Max: sz.Max})
		size = size.Add(*sz)
	}
	return &checker.CallEstimate{CostEstimate: sum, ResultSize: &size}
}

func trackLinear(args []ref.Val, _ ref.Val) *uint64 {
	n := uint64(1)
	for _, a := range args {
		if s, ok := a.(traits.Sizer); ok {
			if sz, ok := s.Size().(types.Int); ok && sz > 0 {
				n += uint64(sz)
			}
		}
	}
	return &n
}

// sizeEstimator bounds every claim, source and otherwise unbounded
// computed value by sizeHint, every value
// nested inside one by elemSizeHint, and connector fields by 256.
type sizeEstimator struct{}

func (sizeEstimator) EstimateSize(n checker.AstNode) *checker.SizeEstimate {
	p := n.Path()
	if len(p) == 0 {
		// A comprehension variable, or a value computed from claims whose
		// size CEL cannot derive (the result of orValue, say).
		return &checker.SizeEstimate{Min: 0, Max: elemSizeHint}
	}
	switch p[0] {
	case varClaims, varSources:
		if len(p) > 2 {
			return &checker.SizeEstimate{Min: 0, Max: elemSizeHint}
		}
		return &checker.SizeEstimate{Min: 0, Max: sizeHint}
	case varConnector:
		return &checker.SizeEstimate{Min: 0, Max: 256}
	}
	// Comprehension variables and other values derived from the inputs.
	return &checker.SizeEstimate{Min: 0, Max: elemSizeHint}
}

func (sizeEstimator) EstimateCallCost(function, overloadID string, target *checker.AstNode, args []checker.AstNode) *checker.CallEstimate {
	return nil
}
