package mapping

import (
	"fmt"
	"reflect"
	"sync/atomic"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
)

// The input of an evaluation: its bounds, checked before any expression
// runs, and its binding to the variables claims, sources and connector.

// Input bounds. The compile-time cost estimate assumes every claim (list,
// map or string) has at most sizeHint elements and every value nested in a
// claim at most elemSizeHint; inputs beyond the bounds are refused before
// any expression runs, so the estimate stays an upper bound.
const maxInputDepth = 32

// checkInput refuses input values beyond the bounds the cost estimate
// assumes. JSON shapes are walked directly; anything else by reflection.
func checkInput(path string, v any, depth int) error {
	if depth > maxInputDepth {
		return fmt.Errorf("%s: nested deeper than %d", path, maxInputDepth)
	}
	limit := sizeHint
	if depth > 1 {
		limit = elemSizeHint
	}
	switch x := v.(type) {
	case nil, bool, float64, int64, int:
		return nil
	case string:
		if len(x) > limit {
			return fmt.Errorf("%s: string of %d bytes, limit %d", path, len(x), limit)
		}
		return nil
	case []any:
		if len(x) > limit {
			return fmt.Errorf("%s: %d elements, limit %d", path, len(x), limit)
		}
		for _, e := range x {
			if err := checkInput(path, e, depth+1); err != nil {
				return err
			}
		}
		return nil
	case map[string]any:
		if len(x) > limit {
			return fmt.Errorf("%s: %d entries, limit %d", path, len(x), limit)
		}
		for k, e := range x {
			if len(k) > elemSizeHint {
				return fmt.Errorf("%s: key of %d bytes, limit %d", path, len(k), elemSizeHint)
			}
			if err := checkInput(path, e, depth+1); err != nil {
				if depth == 0 {
					// Named only on failure: building "claims.<key>" for
					// every claim of every login is most of this walk.
					return checkInput(path+"."+k, e, depth+1)
				}
				return err
			}
		}
		return nil
	}
	return checkReflect(path, reflect.ValueOf(v), depth, limit)
}

func checkReflect(path string, v reflect.Value, depth, limit int) error {
	switch v.Kind() {
	case reflect.Interface, reflect.Pointer:
		if v.IsNil() {
			return nil
		}
		return checkInput(path, v.Elem().Interface(), depth)
	case reflect.String:
		if v.Len() > limit {
			return fmt.Errorf("%s: string of %d bytes, limit %d", path, v.Len(), limit)
		}
	case reflect.Slice, reflect.Array:
		if v.Len() > limit {
			return fmt.Errorf("%s: %d elements, limit %d", path, v.Len(), limit)
		}
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return nil
		}
		for i := 0; i < v.Len(); i++ {
			if !v.Index(i).CanInterface() {
				continue
			}
			if err := checkInput(path, v.Index(i).Interface(), depth+1); err != nil {
				return err
			}
		}
	case reflect.Map:
		if v.Len() > limit {
			return fmt.Errorf("%s: %d entries, limit %d", path, v.Len(), limit)
		}
		for it := v.MapRange(); it.Next(); {
			if err := checkInput(path, it.Key().Interface(), depth+1); err != nil {
				return err
			}
			if err := checkInput(path, it.Value().Interface(), depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

// emptyInput is the value of claims or sources when the input has none.
var emptyInput = types.NewStringInterfaceMap(types.DefaultTypeAdapter, map[string]any{})

// connectorValue is the `connector` variable of one connector, kept by a
// Mapping: a mapping usually serves one connector, and building the map
// on every evaluation cost more than the rest of binding the input.
type connectorValue struct {
	id, typ string
	val     ref.Val
}

// newActivation binds in's variables. last, when not nil, holds the
// connector value made last time and is reused when it matches.
func newActivation(in Input, last *atomic.Pointer[connectorValue]) (cel.Activation, error) {
	if err := checkInput(varClaims, in.Claims, 0); err != nil {
		return nil, err
	}
	if err := checkInput(varSources, in.Sources, 0); err != nil {
		return nil, err
	}
	// Converted once here rather than on every variable access.
	a := types.DefaultTypeAdapter
	act := &inputActivation{claims: emptyInput, sources: emptyInput}
	if in.Claims != nil {
		act.claims = types.NewStringInterfaceMap(a, in.Claims)
	}
	if in.Sources != nil {
		act.sources = types.NewStringInterfaceMap(a, in.Sources)
	}
	var cv *connectorValue
	if last != nil {
		cv = last.Load()
	}
	if cv == nil || cv.id != in.ConnectorID || cv.typ != in.ConnectorType {
		cv = &connectorValue{id: in.ConnectorID, typ: in.ConnectorType,
			val: types.NewStringStringMap(a, map[string]string{"id": in.ConnectorID, "type": in.ConnectorType})}
		if last != nil {
			last.Store(cv)
		}
	}
	act.connector = cv.val
	return act, nil
}

// inputActivation binds the three variables of a mapping: a switch on the
// name instead of the map cel.NewActivation builds.
type inputActivation struct {
	claims, sources, connector ref.Val
}

// ResolveName implements cel.Activation.
func (a *inputActivation) ResolveName(name string) (any, bool) {
	switch name {
	case varClaims:
		return a.claims, true
	case varSources:
		return a.sources, true
	case varConnector:
		return a.connector, true
	}
	return nil, false
}

// Parent implements cel.Activation: there is none.
func (a *inputActivation) Parent() cel.Activation { return nil }
