package config

import (
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"
)

// expandNode replaces ${VAR} and ${VAR:-default} in every scalar value
// (never in mapping keys) under n, in one pass: text that comes from the
// environment is never expanded again. "$$" stands for a literal "$"; a "$"
// followed by anything else is kept as is (bcrypt hashes contain "$2a$").
// A plain (unquoted) scalar that changed is re-resolved after expansion, so
// `port: ${PORT}` can still decode into a number; a quoted one stays a
// string.
func expandNode(n *yaml.Node, path string, getenv func(string) string, ps *problems) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			expandNode(c, path, getenv, ps)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			expandNode(c, index(path, i), getenv, ps)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			expandNode(n.Content[i+1], join(path, n.Content[i].Value), getenv, ps)
		}
	case yaml.ScalarNode:
		if !strings.Contains(n.Value, "$") {
			return
		}
		out, err := expand(n.Value, getenv)
		if err != nil {
			ps.Add(path, "line %d: %v", n.Line, err)
			return
		}
		if out != n.Value {
			n.Value = out
			if n.Style == 0 && (n.Tag == "" || n.Tag == "!!str") {
				n.Tag = "" // resolve again from the expanded text
			}
		}
	}
}

// expand expands one string. getenv returns "" for an unset variable; an
// empty variable without a default is an error, like an unset one, so that
// a missing secret never becomes an empty one.
func expand(s string, getenv func(string) string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); {
		c := s[i]
		if c != '$' || i+1 == len(s) {
			b.WriteByte(c)
			i++
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i += 2
		case '{':
			end := strings.IndexByte(s[i+2:], '}')
			if end < 0 {
				return "", fmt.Errorf("unterminated ${ in %q", s)
			}
			expr := s[i+2 : i+2+end]
			name, def, hasDef := strings.Cut(expr, ":-")
			if !validVarName(name) {
				return "", fmt.Errorf("invalid environment variable name %q in ${%s}", name, expr)
			}
			v := getenv(name)
			if v == "" {
				if !hasDef {
					return "", fmt.Errorf("environment variable %s is not set (write ${%s:-default} for a default)", name, name)
				}
				v = def
			}
			b.WriteString(v)
			i += 2 + end + 1
		default:
			b.WriteByte(c)
			i++
		}
	}
	return b.String(), nil
}

func validVarName(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		switch {
		case r == '_', r >= 'A' && r <= 'Z', r >= 'a' && r <= 'z':
		case r >= '0' && r <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}
