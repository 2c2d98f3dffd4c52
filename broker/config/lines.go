package config

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// SyntaxPath is the path of a problem with the YAML itself (syntax, aliases):
// the file could not be read as a tree, so no key is to blame.
const SyntaxPath = "(yaml)"

// Lines tells where the YAML paths of one configuration file are, so that
// a problem known only by its path ("clients[1].redirect_uris[0]", from
// Validate, a connector's Validate, the mapping compiler) can be reported
// at its line. A nil *Lines, or one of a file that is not YAML, knows no
// line; in a file without any value (empty, or only comments) everything
// is on line 1.
type Lines struct {
	root  *yaml.Node // the document's top value; nil when there is none
	empty bool       // the file is YAML without a value
}

// LinesOf reads the YAML tree of data. Lines are those of the text as
// written: ${VAR} expansion changes values, never lines.
func LinesOf(data []byte) *Lines {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil || checkAliases(&doc) != nil {
		return &Lines{}
	}
	return linesOfTree(&doc)
}

// ReadLines is LinesOf on the file at path.
func ReadLines(path string) (*Lines, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return LinesOf(data), nil
}

// linesOfTree is Lines over a tree already parsed (and whose aliases were
// checked: Line follows them).
func linesOfTree(doc *yaml.Node) *Lines {
	n := doc
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	if n.Kind == 0 || n.Kind == yaml.DocumentNode || n.Kind == yaml.ScalarNode && n.Value == "" && n.ShortTag() == "!!null" {
		return &Lines{empty: true} // no value, or only "---"
	}
	return &Lines{root: n}
}

// Line returns the line of path in the file: the line of its key, of its
// list item, or — for a key that is not written — the line of the nearest
// mapping or list above it that is (a missing "clients[0].secret_hash" is
// reported at the client's "- id:" line, a missing top-level key at the
// file's first key). The empty path, the file as a whole, is its first
// key's line. A key may itself contain dots ("claims.https://x/roles"): the
// longest key that fits is taken. Line returns 0 when l knows no line.
func (l *Lines) Line(path string) int {
	switch {
	case l == nil:
		return 0
	case l.empty:
		return 1
	case l.root == nil:
		return 0
	}
	n, line := l.root, l.root.Line
	rest := path
	for rest != "" {
		for n.Kind == yaml.AliasNode && n.Alias != nil {
			n = n.Alias
		}
		if strings.HasPrefix(rest, "[") {
			end := strings.IndexByte(rest, ']')
			if end < 0 || n.Kind != yaml.SequenceNode {
				return line
			}
			i, err := strconv.Atoi(rest[1:end])
			if err != nil || i < 0 || i >= len(n.Content) {
				return line
			}
			n, line, rest = n.Content[i], n.Content[i].Line, rest[end+1:]
			continue
		}
		rest = strings.TrimPrefix(rest, ".")
		if n.Kind != yaml.MappingNode {
			return line
		}
		k, v := lookupKey(n, rest)
		if k == nil {
			return line
		}
		n, line, rest = v, k.Line, rest[len(k.Value):]
	}
	return line
}

// lookupKey finds, in the mapping n, the longest key that starts path (the
// whole of it, or followed by "." or "["). A key written in n wins over
// one merged in with "<<", as when the file is decoded.
func lookupKey(n *yaml.Node, path string) (key, value *yaml.Node) {
	fits := func(k *yaml.Node) bool {
		if k.Kind != yaml.ScalarNode || !strings.HasPrefix(path, k.Value) {
			return false
		}
		rest := path[len(k.Value):]
		return rest == "" || rest[0] == '.' || rest[0] == '['
	}
	var own, merged [2]*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := n.Content[i]; fits(k) && (own[0] == nil || len(k.Value) > len(own[0].Value)) {
			own = [2]*yaml.Node{k, n.Content[i+1]}
		}
	}
	forPairs(n, func(k, v *yaml.Node) {
		if fits(k) && (merged[0] == nil || len(k.Value) > len(merged[0].Value)) {
			merged = [2]*yaml.Node{k, v}
		}
	})
	if own[0] != nil && (merged[0] == nil || len(own[0].Value) >= len(merged[0].Value)) {
		return own[0], own[1]
	}
	return merged[0], merged[1]
}

// Locate returns ps with every problem that does not name its line yet
// placed at the line of its path: "clients[1].id: line 14: duplicate of
// clients[0].id". A problem whose line l cannot tell is left as it is.
func (l *Lines) Locate(ps []Problem) Errors {
	return Errors(ps).Locate(l.Line)
}
