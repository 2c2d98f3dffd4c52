// Package workbench is the backend of the admin console's mapping
// workbench: compile a draft mapping from its YAML text with the compiler
// `fedbroker check` uses, with every problem at its line and column in the
// text; evaluate a draft or the running mapping of a connector or workload
// issuer on pasted upstream claims (JSON, a SAML attribute list or a SAML
// assertion) with every expression's result, the linking decision (read
// from storage, never written) and the ID and access token claims a client
// would receive; compare a draft with the running mapping on saved
// samples; and start a test sign-in through a real connector (authflow
// finishes it without a session or a code). Nothing here changes the
// running configuration, and nothing is signed.
package workbench

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode"

	"go.yaml.in/yaml/v3"

	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/mapping"
	"github.com/fedbroker/fedbroker/mapping/spec"
	"github.com/fedbroker/fedbroker/problem"
)

// MaxDraftBytes bounds the text of a draft mapping.
const MaxDraftBytes = 256 << 10

// Problem is one problem of a draft, at its place in the draft's text.
type Problem struct {
	// Path is the YAML path inside the mapping ("claims.groups",
	// "require[0].expr"); empty for the text as a whole or its syntax.
	Path string `json:"path"`
	// Line and Column are 1-based, Column counted in characters (code
	// points) from the start of the line.
	Line    int    `json:"line"`
	Column  int    `json:"column"`
	Message string `json:"message"`
}

func (p Problem) String() string {
	if p.Path == "" {
		return fmt.Sprintf("%d:%d: %s", p.Line, p.Column, p.Message)
	}
	return fmt.Sprintf("%d:%d: %s: %s", p.Line, p.Column, p.Path, p.Message)
}

// Draft is a draft mapping compiled from its text.
type Draft struct {
	Text string
	// Spec is the mapping as read (zero when the text did not read).
	Spec spec.Spec
	// Mapping is the compiled mapping; nil whenever there are Problems.
	Mapping  *mapping.Mapping
	Problems []Problem
}

// OK reports whether the draft compiled.
func (d *Draft) OK() bool { return d.Mapping != nil && len(d.Problems) == 0 }

// CompileDraft reads text as one mapping (what is written under
// `mappings.NAME:`) with config.ParseMapping and compiles it with
// mapping.Compile: the same reading and the same compiler as `fedbroker
// check`. Every problem is placed at its line and column in text: a YAML
// problem at its key or value, an expression's problem at the character
// of the expression it names, wherever the expression sits in the text
// (plain, quoted or block scalar).
func CompileDraft(text string) *Draft {
	d := &Draft{Text: text}
	if len(text) > MaxDraftBytes {
		d.Problems = []Problem{{Line: 1, Column: 1, Message: fmt.Sprintf("the mapping is longer than %d KiB", MaxDraftBytes>>10)}}
		return d
	}
	src := newSource(text)
	var root yaml.Node
	_ = yaml.Unmarshal([]byte(text), &root) // for positions only: ParseMapping reports errors
	top := &root
	if top.Kind == yaml.DocumentNode && len(top.Content) > 0 {
		top = top.Content[0]
	}
	s, ps := config.ParseMapping([]byte(text))
	if len(ps) > 0 {
		for _, p := range ps {
			d.Problems = append(d.Problems, src.place(top, p, false))
		}
		return d
	}
	d.Spec = s
	m, cps := mapping.Compile(s, mapping.CompileOptions{})
	for _, p := range cps {
		d.Problems = append(d.Problems, src.place(top, p, true))
	}
	if len(d.Problems) == 0 {
		d.Mapping = m
	}
	return d
}

// source is the draft's text as lines of characters.
type source struct {
	lines [][]rune
}

func newSource(text string) *source {
	s := &source{}
	for _, l := range strings.Split(text, "\n") {
		s.lines = append(s.lines, []rune(strings.TrimSuffix(l, "\r")))
	}
	return s
}

// firstChar is the column of the first non-blank character of line n (1
// for a blank line or one out of range).
func (s *source) firstChar(n int) int {
	if n < 1 || n > len(s.lines) {
		return 1
	}
	for i, r := range s.lines[n-1] {
		if !unicode.IsSpace(r) {
			return i + 1
		}
	}
	return 1
}

// exprPos matches the positions the mapping compiler writes at the start
// of a message: "column 7: " or "line 2 of the expression, column 3: ".
var exprPos = regexp.MustCompile(`^(?:line (\d+) of the expression, )?column (\d+): `)

// place turns a problem of config.ParseMapping or mapping.Compile into a
// Problem at its line and column in the text. fromCompiler: the problem's
// path is mapping.Compile's (a long-form claim "claims.x" names its expr).
func (s *source) place(top *yaml.Node, p problem.Problem, fromCompiler bool) Problem {
	out := Problem{Path: p.Path, Message: p.Message}
	if p.Path == config.SyntaxPath {
		out.Path = ""
	}
	if n := p.Line(); n > 0 {
		out.Line = n
		_, out.Message, _ = strings.Cut(p.Message, ": ")
	}
	key, val, exact := locate(top, out.Path)
	m := exprPos.FindStringSubmatch(out.Message)
	if m != nil && fromCompiler && exact && val != nil && val.Kind == yaml.MappingNode && strings.HasPrefix(out.Path, "claims.") {
		if _, v := child(val, "expr"); v != nil {
			val = v
		}
	}
	if m != nil && exact && val != nil && val.Kind == yaml.ScalarNode {
		el, _ := strconv.Atoi(m[1])
		ec, _ := strconv.Atoi(m[2])
		if el == 0 {
			el = 1
		}
		out.Line, out.Column = s.inScalar(val, el, ec)
		out.Message = out.Message[len(m[0]):]
		return out
	}
	switch {
	case out.Line > 0 && key != nil && key.Line == out.Line:
		out.Column = key.Column
	case out.Line > 0 && val != nil && val.Line == out.Line:
		out.Column = val.Column
	case out.Line > 0:
		out.Column = s.firstChar(out.Line)
	case key != nil:
		out.Line, out.Column = key.Line, key.Column
	case val != nil && val.Line > 0:
		out.Line, out.Column = val.Line, val.Column
	default:
		out.Line, out.Column = 1, s.firstChar(1)
	}
	return out
}

// locate finds path ("require[1].expr", "claims.https://x/roles") below
// the mapping node top: the key node of its last element (nil for a list
// item) and its value. exact is false when only an ancestor was found
// (key and value are then the nearest written ancestor's).
func locate(top *yaml.Node, path string) (key, val *yaml.Node, exact bool) {
	if top == nil || top.Kind == 0 {
		return nil, nil, false
	}
	n := top
	rest := path
	for rest != "" {
		for n.Kind == yaml.AliasNode && n.Alias != nil {
			n = n.Alias
		}
		if strings.HasPrefix(rest, "[") {
			end := strings.IndexByte(rest, ']')
			if end < 0 || n.Kind != yaml.SequenceNode {
				return key, n, false
			}
			i, err := strconv.Atoi(rest[1:end])
			if err != nil || i < 0 || i >= len(n.Content) {
				return key, n, false
			}
			key, n, rest = nil, n.Content[i], rest[end+1:]
			continue
		}
		rest = strings.TrimPrefix(rest, ".")
		if n.Kind != yaml.MappingNode {
			return key, n, false
		}
		var bk, bv *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if k.Kind != yaml.ScalarNode || !strings.HasPrefix(rest, k.Value) {
				continue
			}
			if r := rest[len(k.Value):]; r != "" && r[0] != '.' && r[0] != '[' {
				continue
			}
			if bk == nil || len(k.Value) > len(bk.Value) {
				bk, bv = k, n.Content[i+1]
			}
		}
		if bk == nil {
			return key, n, false
		}
		key, n, rest = bk, bv, rest[len(bk.Value):]
	}
	return key, n, true
}

// child returns the key and value of name in the mapping node n.
func child(n *yaml.Node, name string) (*yaml.Node, *yaml.Node) {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == name {
			return n.Content[i], n.Content[i+1]
		}
	}
	return nil, nil
}

// inScalar maps a position in the decoded value of scalar node v (line
// and column of the expression, 1-based, in characters) to its line and
// column in the text. The decoded value is matched against the text from
// where the scalar starts, character by character, skipping what YAML
// removes (quotes, escapes, block indicators, indentation, folded line
// breaks).
func (s *source) inScalar(v *yaml.Node, exprLine, exprCol int) (int, int) {
	value := []rune(v.Value)
	// The offset of the position in the decoded value.
	target, line := 0, 1
	for target < len(value) && line < exprLine {
		if value[target] == '\n' {
			line++
		}
		target++
	}
	target = min(target+exprCol-1, len(value))

	l, c := v.Line-1, v.Column-1 // 0-based position in s.lines
	switch {
	case v.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0:
		l, c = l+1, 0 // the content starts on the next line
	case v.Style&(yaml.SingleQuotedStyle|yaml.DoubleQuotedStyle) != 0:
		c++ // after the opening quote
	}
	at := func(l, c int) (rune, bool) {
		if l >= len(s.lines) {
			return 0, false
		}
		if c >= len(s.lines[l]) {
			return '\n', true
		}
		return s.lines[l][c], true
	}
	next := func(l, c int) (int, int) {
		if c >= len(s.lines[l]) {
			return l + 1, 0
		}
		return l, c + 1
	}
	// Skip leading indentation of a block scalar.
	if v.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0 {
		for r, ok := at(l, c); ok && r == ' '; r, ok = at(l, c) {
			l, c = next(l, c)
		}
	}
	const lookahead = 256
	for i := 0; i < target; i++ {
		ch := value[i]
		r, ok := at(l, c)
		if !ok {
			break
		}
		if unicode.IsSpace(ch) {
			if unicode.IsSpace(r) {
				l, c = next(l, c)
				// A line break in the value also swallows the next line's
				// indentation.
				if r == '\n' {
					for r, ok := at(l, c); ok && r == ' ' && c < 256; r, ok = at(l, c) {
						l, c = next(l, c)
					}
				}
			}
			continue
		}
		fl, fc, found := l, c, false
		for k := 0; k < lookahead; k++ {
			r, ok := at(fl, fc)
			if !ok {
				break
			}
			if r == ch {
				found = true
				break
			}
			fl, fc = next(fl, fc)
		}
		if found {
			l, c = next(fl, fc)
		}
	}
	// Land on the next character of the expression, not on what YAML
	// removes before it (indentation, a line break).
	if target < len(value) && !unicode.IsSpace(value[target]) {
		for k := 0; k < lookahead; k++ {
			r, ok := at(l, c)
			if !ok || r == value[target] {
				break
			}
			if r != ' ' && r != '\n' && r != '\'' && r != '"' && r != '\\' {
				break
			}
			l, c = next(l, c)
		}
	}
	if l >= len(s.lines) {
		l = len(s.lines) - 1
		c = len(s.lines[l])
	}
	return l + 1, c + 1
}

// SpecYAML writes s as the text of one mapping, the way a person would
// write it under `mappings.NAME:` (claims in the short form when they go
// in both tokens; multi-line expressions as literal blocks).
func SpecYAML(s spec.Spec) string {
	root := &yaml.Node{Kind: yaml.MappingNode}
	add := func(k string, v *yaml.Node) {
		root.Content = append(root.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: k}, v)
	}
	if len(s.Require) > 0 {
		seq := &yaml.Node{Kind: yaml.SequenceNode}
		for _, r := range s.Require {
			m := &yaml.Node{Kind: yaml.MappingNode}
			m.Content = append(m.Content, scalar("expr"), exprNode(r.Expr), scalar("message"), strNode(r.Message))
			seq.Content = append(seq.Content, m)
		}
		add("require", seq)
	}
	if s.Subject != "" {
		add("subject", exprNode(s.Subject))
	}
	if s.Link != "" {
		add("link", exprNode(s.Link))
	}
	if s.AllowUnverifiedEmailLink {
		add("allow_unverified_email_link", &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: "true"})
	}
	if len(s.Claims) > 0 {
		m := &yaml.Node{Kind: yaml.MappingNode}
		for _, name := range sortedKeys(s.Claims) {
			c := s.Claims[name]
			m.Content = append(m.Content, strNode(name))
			if c.In == "" || c.In == mapping.InBoth {
				m.Content = append(m.Content, exprNode(c.Expr))
				continue
			}
			long := &yaml.Node{Kind: yaml.MappingNode}
			long.Content = append(long.Content, scalar("expr"), exprNode(c.Expr), scalar("in"), strNode(c.In))
			m.Content = append(m.Content, long)
		}
		add("claims", m)
	}
	if len(s.Tables) > 0 {
		var t yaml.Node
		if err := t.Encode(s.Tables); err == nil {
			add("tables", &t)
		}
	}
	if len(root.Content) == 0 {
		return "{}\n"
	}
	var b strings.Builder
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(root); err != nil {
		return ""
	}
	_ = enc.Close()
	return b.String()
}

func scalar(s string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Value: s} }

// strNode is a string value, quoted by the encoder when it must be.
func strNode(s string) *yaml.Node {
	var n yaml.Node
	_ = n.Encode(s)
	return &n
}

// exprNode is an expression: a literal block when it has several lines.
func exprNode(s string) *yaml.Node {
	n := strNode(s)
	if strings.Contains(strings.TrimRight(s, "\n"), "\n") {
		n.Style = yaml.LiteralStyle
	}
	return n
}
