package config

import (
	"reflect"
	"slices"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Change is one difference between two configurations: the YAML path of
// what changed and how. It never carries a value, so a changed secret
// (a client_secret in a connector's config, admin.token,
// signing.key_encryption_key, a Redis URL with its password) shows only
// its path.
type Change struct {
	// Path is the field's YAML path. Entries of id-keyed lists (clients,
	// connectors, workloads) are named by id, map entries by key:
	// clients[app].redirect_uris, connectors[corp].config.client_secret,
	// mappings[corp].claims[email]. Lists of values and lists inside a
	// connector's or workload issuer's config: are one field.
	Path string `json:"path"`
	// Kind is ChangeAdded, ChangeRemoved, ChangeChanged or ChangeReordered.
	Kind string `json:"change"`
}

// The kinds of Change.
const (
	ChangeAdded     = "added"
	ChangeRemoved   = "removed"
	ChangeChanged   = "changed"
	ChangeReordered = "reordered" // the same ids in another order
)

// Section is the top-level key the change is under ("clients" for
// clients[app].redirect_uris).
func (c Change) Section() string {
	if i := strings.IndexAny(c.Path, ".["); i >= 0 {
		return c.Path[:i]
	}
	return c.Path
}

func (c Change) String() string { return c.Path + " (" + c.Kind + ")" }

// Diff lists what differs between old and next, section by section in the
// order of the file's sections: a field added, removed or changed; an
// entry of an id-keyed list or of a map added or removed, or its fields
// changed; an id-keyed list reordered. Formatting, comments and key order
// are not changes. Values are never part of the result.
func Diff(old, next *Config) []Change {
	var d differ
	d.value(reflect.ValueOf(old).Elem(), reflect.ValueOf(next).Elem(), "")
	return d.out
}

// WithSections returns a copy of running whose top-level sections for
// which take returns true (by YAML key: "clients", "http") are next's:
// the configuration a server runs after applying only part of next.
func WithSections(running, next *Config, take func(section string) bool) *Config {
	out := *running
	o, n := reflect.ValueOf(&out).Elem(), reflect.ValueOf(next).Elem()
	for i := range o.NumField() {
		if name, ok := yamlName(o.Type().Field(i)); ok && take(name) {
			o.Field(i).Set(n.Field(i))
		}
	}
	return &out
}

type differ struct{ out []Change }

func (d *differ) add(path, kind string) { d.out = append(d.out, Change{Path: path, Kind: kind}) }

// yamlName is the key a struct field has in YAML, as yaml.v3 names it.
func yamlName(f reflect.StructField) (string, bool) {
	if !f.IsExported() {
		return "", false
	}
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	switch name {
	case "-":
		return "", false
	case "":
		return strings.ToLower(f.Name), true
	}
	return name, true
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func (d *differ) value(a, b reflect.Value, path string) {
	if a.Type() == nodeType {
		d.node(a.Addr().Interface().(*yaml.Node), b.Addr().Interface().(*yaml.Node), path)
		return
	}
	switch a.Kind() {
	case reflect.Pointer:
		switch {
		case a.IsNil() && b.IsNil():
		case a.IsNil():
			d.add(path, ChangeAdded)
		case b.IsNil():
			d.add(path, ChangeRemoved)
		default:
			d.value(a.Elem(), b.Elem(), path)
		}
	case reflect.Struct:
		if reflect.PointerTo(a.Type()).Implements(unmarshalType) {
			// A value with a YAML form of its own (a mapping claim,
			// written as an expression or as {expr, in}) is one field.
			if !equalValues(a, b) {
				d.add(path, ChangeChanged)
			}
			return
		}
		for i := range a.NumField() {
			if name, ok := yamlName(a.Type().Field(i)); ok {
				d.value(a.Field(i), b.Field(i), joinPath(path, name))
			}
		}
	case reflect.Slice:
		if idField(a.Type().Elem()) >= 0 && d.keyedList(a, b, path) {
			return
		}
		if !equalValues(a, b) {
			d.add(path, ChangeChanged)
		}
	case reflect.Map:
		keys := mapKeys(a, b)
		for _, k := range keys {
			va, vb := a.MapIndex(reflect.ValueOf(k)), b.MapIndex(reflect.ValueOf(k))
			p := path + "[" + k + "]"
			switch {
			case !vb.IsValid():
				d.add(p, ChangeRemoved)
			case !va.IsValid():
				d.add(p, ChangeAdded)
			default:
				// Map values are not addressable: copy them.
				ca, cb := reflect.New(va.Type()).Elem(), reflect.New(vb.Type()).Elem()
				ca.Set(va)
				cb.Set(vb)
				d.value(ca, cb, p)
			}
		}
	default:
		if !equalValues(a, b) {
			d.add(path, ChangeChanged)
		}
	}
}

// idField is the index of the string field with YAML key "id" in struct
// type t, or -1.
func idField(t reflect.Type) int {
	if t.Kind() != reflect.Struct {
		return -1
	}
	for i := range t.NumField() {
		f := t.Field(i)
		if name, ok := yamlName(f); ok && name == "id" && f.Type.Kind() == reflect.String {
			return i
		}
	}
	return -1
}

// keyedList diffs two lists of structs with an id entry by entry; it
// returns false (compare them as a whole) when an id is empty or repeated.
func (d *differ) keyedList(a, b reflect.Value, path string) bool {
	idx := idField(a.Type().Elem())
	ids := func(v reflect.Value) ([]string, map[string]int, bool) {
		list, at := make([]string, v.Len()), make(map[string]int, v.Len())
		for i := range v.Len() {
			id := v.Index(i).Field(idx).String()
			if _, dup := at[id]; dup || id == "" {
				return nil, nil, false
			}
			list[i], at[id] = id, i
		}
		return list, at, true
	}
	oldIDs, oldAt, ok1 := ids(a)
	newIDs, newAt, ok2 := ids(b)
	if !ok1 || !ok2 {
		return false
	}
	var keptOld, keptNew []string
	for _, id := range oldIDs {
		if _, ok := newAt[id]; ok {
			keptOld = append(keptOld, id)
		} else {
			d.add(path+"["+id+"]", ChangeRemoved)
		}
	}
	for _, id := range newIDs {
		if _, ok := oldAt[id]; ok {
			keptNew = append(keptNew, id)
		} else {
			d.add(path+"["+id+"]", ChangeAdded)
		}
	}
	if !slices.Equal(keptOld, keptNew) {
		d.add(path, ChangeReordered)
	}
	for _, id := range keptNew {
		d.value(a.Index(oldAt[id]), b.Index(newAt[id]), path+"["+id+"]")
	}
	return true
}

// mapKeys returns the keys of both maps (string keys), sorted.
func mapKeys(a, b reflect.Value) []string {
	seen := map[string]bool{}
	for _, m := range []reflect.Value{a, b} {
		for _, k := range m.MapKeys() {
			seen[k.String()] = true
		}
	}
	keys := make([]string, 0, len(seen))
	for k := range seen {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// equalValues compares two values of the same type; empty and nil lists
// and maps are equal, as are YAML nodes that differ only in formatting.
func equalValues(a, b reflect.Value) bool {
	var d differ
	switch a.Kind() {
	case reflect.Slice:
		if a.Len() != b.Len() {
			return false
		}
		for i := range a.Len() {
			if !equalValues(a.Index(i), b.Index(i)) {
				return false
			}
		}
		return true
	case reflect.Struct:
		if a.Type() != nodeType && reflect.PointerTo(a.Type()).Implements(unmarshalType) {
			return reflect.DeepEqual(a.Interface(), b.Interface())
		}
		fallthrough
	case reflect.Map, reflect.Pointer:
		if a.Kind() == reflect.Struct && !a.CanAddr() {
			ca := reflect.New(a.Type()).Elem()
			ca.Set(a)
			cb := reflect.New(b.Type()).Elem()
			cb.Set(b)
			a, b = ca, cb
		}
		d.value(a, b, "x")
		return len(d.out) == 0
	}
	return reflect.DeepEqual(a.Interface(), b.Interface())
}

// node diffs two YAML trees (a connector's or workload issuer's config:
// block): mapping keys by name, anything else as one value.
func (d *differ) node(a, b *yaml.Node, path string) {
	a, b = resolveNode(a), resolveNode(b)
	switch {
	case a == nil && b == nil:
		return
	case a == nil:
		d.add(path, ChangeAdded)
		return
	case b == nil:
		d.add(path, ChangeRemoved)
		return
	}
	if a.Kind != yaml.MappingNode || b.Kind != yaml.MappingNode {
		if !nodesEqual(a, b) {
			d.add(path, ChangeChanged)
		}
		return
	}
	ma, mb := nodeMap(a), nodeMap(b)
	keys := make([]string, 0, len(ma)+len(mb))
	for k := range ma {
		keys = append(keys, k)
	}
	for k := range mb {
		if _, ok := ma[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		va, inA := ma[k]
		vb, inB := mb[k]
		switch {
		case !inB:
			d.add(joinPath(path, k), ChangeRemoved)
		case !inA:
			d.add(joinPath(path, k), ChangeAdded)
		default:
			d.node(va, vb, joinPath(path, k))
		}
	}
}

// resolveNode follows documents and aliases; nil for an absent or null
// value.
func resolveNode(n *yaml.Node) *yaml.Node {
	for n != nil {
		switch {
		case n.Kind == yaml.DocumentNode && len(n.Content) > 0:
			n = n.Content[0]
		case n.Kind == yaml.AliasNode && n.Alias != nil:
			n = n.Alias
		case n.Kind == 0, n.Kind == yaml.DocumentNode, n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null":
			return nil
		default:
			return n
		}
	}
	return nil
}

// nodeMap indexes a mapping node's values by key.
func nodeMap(n *yaml.Node) map[string]*yaml.Node {
	m := make(map[string]*yaml.Node, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		m[n.Content[i].Value] = n.Content[i+1]
	}
	return m
}

// nodesEqual compares two YAML values, ignoring style, comments,
// positions and key order.
func nodesEqual(a, b *yaml.Node) bool {
	a, b = resolveNode(a), resolveNode(b)
	if a == nil || b == nil {
		return a == b
	}
	if a.Kind != b.Kind {
		return false
	}
	switch a.Kind {
	case yaml.ScalarNode:
		return a.Value == b.Value && a.ShortTag() == b.ShortTag()
	case yaml.SequenceNode:
		if len(a.Content) != len(b.Content) {
			return false
		}
		for i := range a.Content {
			if !nodesEqual(a.Content[i], b.Content[i]) {
				return false
			}
		}
		return true
	case yaml.MappingNode:
		ma, mb := nodeMap(a), nodeMap(b)
		if len(ma) != len(mb) {
			return false
		}
		for k, va := range ma {
			vb, ok := mb[k]
			if !ok || !nodesEqual(va, vb) {
				return false
			}
		}
		return true
	}
	return false
}

// ReloadReport is what a reload did with the changes it found between the
// configuration a server runs and the one it was given.
type ReloadReport struct {
	// Applied are the changes now in effect.
	Applied []Change `json:"applied"`
	// RestartRequired are the changes a running server cannot take: the
	// old values keep running until a restart.
	RestartRequired []Change `json:"restart_required"`
}

// Status sums the report up: "no changes", "reloaded" (everything
// applied) or "restart required" (some changes wait for a restart).
func (r ReloadReport) Status() string {
	switch {
	case len(r.RestartRequired) > 0:
		return "restart required"
	case len(r.Applied) > 0:
		return "reloaded"
	}
	return "no changes"
}
