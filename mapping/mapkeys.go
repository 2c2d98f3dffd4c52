package mapping

import (
	"fmt"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/types"
)

// checkMapKeys refuses a map literal whose key is of a type CEL maps cannot
// have: the CEL specification allows int, uint, bool and string keys (a
// key of type dyn is checked when it is evaluated). cel-go accepts some
// others at check time and then fails on them, a bytes key even while
// planning the program (a panic), so they are refused here with a message.
func (c *compiler) checkMapKeys(path, expr string, a *cel.Ast) bool {
	native := a.NativeRep()
	ok := true
	ast.PostOrderVisit(native.Expr(), ast.NewExprVisitor(func(e ast.Expr) {
		if e.Kind() != ast.MapKind {
			return
		}
		for _, en := range e.AsMap().Entries() {
			k := en.AsMapEntry().Key()
			switch t := native.GetType(k.ID()); t.Kind() {
			case types.IntKind, types.UintKind, types.BoolKind, types.StringKind, types.DynKind, types.AnyKind, types.ErrorKind:
			default:
				c.errs = append(c.errs, problemAt(path, expr, native.SourceInfo().GetStartLocation(k.ID()),
					fmt.Sprintf("a map key must be an int, uint, bool or string, not %s", t)))
				ok = false
			}
		}
	}))
	return ok
}
