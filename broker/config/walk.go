package config

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

var (
	nodeType      = reflect.TypeFor[yaml.Node]()
	durationType  = reflect.TypeFor[time.Duration]()
	unmarshalType = reflect.TypeFor[yaml.Unmarshaler]()
)

// checkNode walks n against the Go type t it will be decoded into and
// reports, with their YAML paths, keys t has no field for, duplicate keys,
// and values of the wrong shape or type. It does not decode anything; it
// lets a later yaml Decode run on a tree known to fit.
func checkNode(n *yaml.Node, t reflect.Type, path string, ps *problems) {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) > 0 {
			checkNode(n.Content[0], t, path, ps)
		}
		return
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nodeType || t.Kind() == reflect.Interface {
		return // decoded later (connector config) or anything goes
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return // an empty value leaves the zero value
	}
	if reflect.PointerTo(t).Implements(unmarshalType) {
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			ps.Add(path, "line %d: %s", n.Line, typeMessage(err))
			return
		}
		if n.Kind == yaml.MappingNode && t.Kind() == reflect.Struct {
			checkStruct(n, t, path, ps)
		}
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			ps.Add(path, "line %d: expected a mapping, got %s", n.Line, kindName(n))
			return
		}
		checkStruct(n, t, path, ps)
	case reflect.Slice, reflect.Array:
		if n.Kind != yaml.SequenceNode {
			ps.Add(path, "line %d: expected a list, got %s", n.Line, kindName(n))
			return
		}
		for i, c := range n.Content {
			checkNode(c, t.Elem(), index(path, i), ps)
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			ps.Add(path, "line %d: expected a mapping, got %s", n.Line, kindName(n))
			return
		}
		seen := make(map[string]int)
		forPairs(n, func(k, v *yaml.Node) {
			if first, dup := seen[k.Value]; dup {
				ps.Add(join(path, k.Value), "line %d: duplicate key (first at line %d)", k.Line, first)
				return
			}
			seen[k.Value] = k.Line
			checkNode(v, t.Elem(), join(path, k.Value), ps)
		})
	default:
		if n.Kind != yaml.ScalarNode {
			ps.Add(path, "line %d: expected a single value, got %s", n.Line, kindName(n))
			return
		}
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			if t == durationType {
				ps.Add(path, "line %d: invalid duration %q (use Go syntax such as 90s, 5m or 1h30m)", n.Line, n.Value)
				return
			}
			ps.Add(path, "line %d: %s", n.Line, typeMessage(err))
		}
	}
}

// checkStruct checks a mapping node against struct t's yaml tags.
func checkStruct(n *yaml.Node, t reflect.Type, path string, ps *problems) {
	fields := yamlFields(t)
	seen := make(map[string]int)
	forPairs(n, func(k, v *yaml.Node) {
		p := join(path, k.Value)
		if first, dup := seen[k.Value]; dup {
			ps.Add(p, "line %d: duplicate key (first at line %d)", k.Line, first)
			return
		}
		seen[k.Value] = k.Line
		f, ok := fields[k.Value]
		if !ok {
			if s := suggest(k.Value, fields); s != "" {
				ps.Add(p, "line %d: unknown key (did you mean %s?)", k.Line, s)
			} else {
				ps.Add(p, "line %d: unknown key", k.Line)
			}
			return
		}
		checkNode(v, f.Type, p, ps)
	})
}

// forPairs calls fn for each key/value of a mapping node, following "<<"
// merge keys.
func forPairs(n *yaml.Node, fn func(k, v *yaml.Node)) {
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.Value == "<<" && k.Style == 0 {
			for v.Kind == yaml.AliasNode && v.Alias != nil {
				v = v.Alias
			}
			switch v.Kind {
			case yaml.MappingNode:
				forPairs(v, fn)
			case yaml.SequenceNode:
				for _, m := range v.Content {
					for m.Kind == yaml.AliasNode && m.Alias != nil {
						m = m.Alias
					}
					if m.Kind == yaml.MappingNode {
						forPairs(m, fn)
					}
				}
			}
			continue
		}
		fn(k, v)
	}
}

// yamlFields maps yaml key names to the struct fields of t.
func yamlFields(t reflect.Type) map[string]reflect.StructField {
	out := make(map[string]reflect.StructField)
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if strings.Contains(opts, "inline") {
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for k, v := range yamlFields(ft) {
					out[k] = v
				}
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = f
	}
	return out
}

// suggest returns the known key closest to key when it is close enough to
// be a typo.
func suggest(key string, fields map[string]reflect.StructField) string {
	names := make([]string, 0, len(fields))
	for k := range fields {
		names = append(names, k)
	}
	sort.Strings(names)
	best, bestD := "", 0
	for _, name := range names {
		d := levenshtein(strings.ToLower(key), name)
		if best == "" || d < bestD {
			best, bestD = name, d
		}
	}
	limit := 2
	if len(key) <= 3 {
		limit = 1
	}
	if best != "" && bestD <= limit {
		return best
	}
	return ""
}

func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("%q", n.Value)
	default:
		return "nothing"
	}
}

var linePrefix = regexp.MustCompile(`^(yaml: )?(unmarshal errors:\n\s*)?line \d+: `)

// typeMessage strips yaml's "line N:" prefix, which the caller reports in
// its own format.
func typeMessage(err error) string {
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		return linePrefix.ReplaceAllString(te.Errors[0], "")
	}
	return linePrefix.ReplaceAllString(err.Error(), "")
}
