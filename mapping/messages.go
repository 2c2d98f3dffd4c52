package mapping

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"unicode"

	"github.com/google/cel-go/common"
)

// This file turns cel-go's parser and checker errors into sentences for
// the person who wrote the expression: the ANTLR texts ("mismatched input
// '<EOF>' expecting {...}") become "the expression ends too early: a
// closing ")" is missing", each with its position in the expression.
// What is not recognised keeps cel-go's own message, with the position in
// the same words.

// pos is a position in an expression: 1-based line and column, counted in
// characters (code points), as cel-go counts them. line 0: unknown.
type pos struct{ line, col int }

// where renders p for expr: "column 7" for a one-line expression, "line 2
// of the expression, column 3" otherwise (the configuration's loader may
// put the YAML line in front of the message: the two must not be mixed up).
func (p pos) where(expr string) string {
	if strings.Contains(expr, "\n") {
		return fmt.Sprintf("line %d of the expression, column %d", p.line, p.col)
	}
	return fmt.Sprintf("column %d", p.col)
}

// maxQuoted is the longest expression quoted whole after a problem; a
// longer one is quoted around the position.
const maxQuoted = 80

// positioned renders one problem of expr at p: "column 7: MSG (in "EXPR")".
func positioned(expr string, p pos, msg string) string {
	if p.line <= 0 {
		return fmt.Sprintf("%s (in %s)", msg, quoteExpr(expr, p))
	}
	q := quoteExpr(expr, p)
	if strings.HasPrefix(q, "…") || strings.HasSuffix(q, "…") {
		return fmt.Sprintf("%s: %s (near %s)", p.where(expr), msg, q)
	}
	return fmt.Sprintf("%s: %s (in %s)", p.where(expr), msg, q)
}

// quoteExpr quotes expr, or for a long one, the part of p's line around p.
func quoteExpr(expr string, p pos) string {
	if len([]rune(expr)) <= maxQuoted || p.line <= 0 {
		return fmt.Sprintf("%q", expr)
	}
	lines := strings.Split(expr, "\n")
	if p.line > len(lines) {
		return fmt.Sprintf("%q", expr)
	}
	line := []rune(lines[p.line-1])
	from, to := max(p.col-1-50, 0), min(p.col-1+20, len(line))
	if from > to {
		from = to
	}
	q := fmt.Sprintf("%q", string(line[from:to]))
	if from > 0 {
		q = "…" + q
	}
	if to < len(line) {
		q += "…"
	}
	return q
}

// celPos converts a cel-go location (1-based line, 0-based column).
func celPos(l common.Location) pos {
	if l == nil || l.Line() <= 0 {
		return pos{}
	}
	return pos{line: l.Line(), col: l.Column() + 1}
}

// describeIssues turns the errors cel-go reported for expr into problem
// messages. A syntax error is reported alone: the parser's later errors
// follow from the first.
func describeIssues(expr string, errs []*common.Error) []string {
	if len(errs) == 0 {
		return nil
	}
	src := newSourceText(expr)
	if isSyntax(errs) {
		// The first syntax error; a macro's complaint (has(c), say) only
		// when the syntax is otherwise fine.
		var first *common.Error
		for _, e := range errs {
			if !strings.HasPrefix(e.Message, "Syntax error: ") {
				continue
			}
			if first == nil || src.offset(celPos(e.Location)) < src.offset(celPos(first.Location)) {
				first = e
			}
		}
		p, msg := describeSyntax(src, celPos(first.Location), first.Message)
		return []string{positioned(expr, p, msg)}
	}
	out := make([]string, 0, len(errs))
	for _, e := range errs {
		p, msg := describeCheck(src, celPos(e.Location), e.Message)
		out = append(out, positioned(expr, p, msg))
	}
	return out
}

func isSyntax(errs []*common.Error) bool {
	for _, e := range errs {
		if strings.HasPrefix(e.Message, "Syntax error: ") {
			return true
		}
	}
	return false
}

// sourceText is an expression as runes, with where each line starts.
type sourceText struct {
	expr       string
	runes      []rune
	lineStarts []int // rune offsets
}

func newSourceText(expr string) *sourceText {
	s := &sourceText{expr: expr, runes: []rune(expr), lineStarts: []int{0}}
	for i, r := range s.runes {
		if r == '\n' {
			s.lineStarts = append(s.lineStarts, i+1)
		}
	}
	return s
}

// offset is the rune offset of p (len(runes) at or past the end).
func (s *sourceText) offset(p pos) int {
	if p.line <= 0 || p.line > len(s.lineStarts) {
		return len(s.runes)
	}
	return min(s.lineStarts[p.line-1]+p.col-1, len(s.runes))
}

// posOf is the position of rune offset off.
func (s *sourceText) posOf(off int) pos {
	line := sort.Search(len(s.lineStarts), func(i int) bool { return s.lineStarts[i] > off })
	return pos{line: line, col: off - s.lineStarts[line-1] + 1}
}

func (s *sourceText) atEnd(p pos) bool {
	return strings.TrimSpace(string(s.runes[min(s.offset(p), len(s.runes)):])) == ""
}

// bracket is an opening bracket and where it is.
type bracket struct {
	r   rune
	off int
}

var closerOf = map[rune]rune{'(': ')', '[': ']', '{': '}'}

// brackets scans the expression up to rune offset end, skipping string
// literals, and returns the brackets still open there and whether a closer
// at end would close one of them.
func (s *sourceText) brackets(end int) (open []bracket) {
	rs := s.runes
	for i := 0; i < end && i < len(rs); i++ {
		switch r := rs[i]; r {
		case '(', '[', '{':
			open = append(open, bracket{r, i})
		case ')', ']', '}':
			if n := len(open); n > 0 && closerOf[open[n-1].r] == r {
				open = open[:n-1]
			}
		case '"', '\'':
			i = skipString(rs, i)
		}
	}
	return open
}

// skipString returns the offset of the last rune of the string literal
// starting at rs[i] (a quote), or len(rs) when it is never closed.
func skipString(rs []rune, i int) int {
	q := rs[i]
	triple := i+2 < len(rs) && rs[i+1] == q && rs[i+2] == q
	raw := i > 0 && (rs[i-1] == 'r' || rs[i-1] == 'R')
	if triple {
		for j := i + 3; j+2 < len(rs); j++ {
			if !raw && rs[j] == '\\' {
				j++
				continue
			}
			if rs[j] == q && rs[j+1] == q && rs[j+2] == q {
				return j + 2
			}
		}
		return len(rs)
	}
	for j := i + 1; j < len(rs); j++ {
		switch {
		case !raw && rs[j] == '\\':
			j++
		case rs[j] == q:
			return j
		case rs[j] == '\n':
			return len(rs)
		}
	}
	return len(rs)
}

var (
	reMismatched  = regexp.MustCompile(`^(?:mismatched|extraneous) input '(.*)' expecting (.*)$`)
	reMissing     = regexp.MustCompile(`^missing '(.*)' at '(.*)'$`)
	reNoViable    = regexp.MustCompile(`^no viable alternative at input '(.*)'$`)
	reTokenError  = regexp.MustCompile(`^token recognition error at: '(.*)'$`)
	reNoOverload  = regexp.MustCompile(`^found no matching overload for '(.+)' applied to '(.*)'$`)
	reUndeclared  = regexp.MustCompile(`^undeclared reference to '(.+)' \(in container '.*'\)$`)
	reExpectedTyp = regexp.MustCompile(`^expected type '(.+)' but found '(.+)'$`)
)

// celReserved are words CEL keeps for itself; claims.in does not parse.
var celReserved = map[string]bool{
	"as": true, "break": true, "const": true, "continue": true, "else": true,
	"for": true, "function": true, "if": true, "import": true, "let": true,
	"loop": true, "package": true, "namespace": true, "return": true,
	"var": true, "void": true, "while": true, "in": true, "true": true,
	"false": true, "null": true,
}

// describeSyntax puts one parser error in words. It may move the position
// (to where an unclosed string starts, say).
func describeSyntax(s *sourceText, p pos, raw string) (pos, string) {
	msg := strings.TrimPrefix(raw, "Syntax error: ")
	if m := reTokenError.FindStringSubmatch(msg); m != nil {
		return p, describeBadToken(m[1])
	}
	if s.atEnd(p) && (strings.Contains(msg, "'<EOF>'") || reNoViable.MatchString(msg)) {
		return p, endsTooEarly(s, p, msg)
	}
	if m := reMismatched.FindStringSubmatch(msg); m != nil {
		return p, unexpected(s, p, m[1], m[2])
	}
	if m := reMissing.FindStringSubmatch(msg); m != nil {
		return p, fmt.Sprintf("a %q is missing before %q", m[1], m[2])
	}
	if reNoViable.MatchString(msg) {
		tok := tokenAt(s, p)
		off := s.offset(p)
		if off > 0 && s.runes[off-1] == '.' && celReserved[tok] {
			return p, fmt.Sprintf(`%q is a reserved word: read this claim as claims[%q]`, tok, tok)
		}
		return p, fmt.Sprintf("unexpected %q", tok)
	}
	return p, describeOther(msg)
}

// describeBadToken explains text the lexer could not read.
func describeBadToken(tok string) string {
	t := strings.TrimSpace(tok)
	body := strings.TrimLeft(t, "bBrR")
	switch {
	case strings.HasPrefix(body, `"`) || strings.HasPrefix(body, "'"):
		if esc := badEscape(body); esc != "" {
			return `the string that starts here has an invalid escape "` + esc + `" (write "\\" for a backslash)`
		}
		return "the string that starts here is never closed: add the closing " + body[:1]
	case strings.HasPrefix(t, "="):
		return `"=" is not an operator: write "==" to compare`
	case strings.HasPrefix(t, "&"):
		return `"&" is not an operator: write "&&" for "and"`
	case strings.HasPrefix(t, "|"):
		return `"|" is not an operator: write "||" for "or"`
	}
	r := []rune(t)
	if len(r) == 0 {
		return "unexpected character"
	}
	return fmt.Sprintf("unexpected character %q", string(r[0]))
}

// badEscape returns the first invalid escape sequence in a string token.
func badEscape(tok string) string {
	const valid = `abfnrtv\'"` + "`?xuU01234567"
	rs := []rune(tok)
	for i := 0; i+1 < len(rs); i++ {
		if rs[i] == '\\' {
			if !strings.ContainsRune(valid, rs[i+1]) {
				return string(rs[i : i+2])
			}
			i++
		}
	}
	return ""
}

// trailingOps are the tokens after which a value must follow, longest
// first.
var trailingOps = []string{"==", "!=", "<=", ">=", "&&", "||", ".?", "<", ">", "+", "-", "*", "/", "%", "!", ",", "?", ":", "."}

// endsTooEarly explains an error at the end of the expression.
func endsTooEarly(s *sourceText, p pos, msg string) string {
	open := s.brackets(len(s.runes))
	var parts []string
	tail := strings.TrimRightFunc(s.expr, unicode.IsSpace)
	var after string
	for _, op := range trailingOps {
		if strings.HasSuffix(tail, op) {
			after = op
			break
		}
	}
	if strings.HasSuffix(tail, " in") || tail == "in" {
		after = "in"
	}
	switch after {
	case "":
	case ".", ".?":
		parts = append(parts, fmt.Sprintf("a name is missing after %q", after))
	default:
		parts = append(parts, fmt.Sprintf("a value is missing after %q", after))
	}
	for i := len(open) - 1; i >= 0; i-- {
		b := open[i]
		where := s.posOf(b.off).where(s.expr)
		if len(parts) == 0 {
			parts = append(parts, fmt.Sprintf("a closing %q is missing for the %q at %s", string(closerOf[b.r]), string(b.r), where))
		} else {
			parts = append(parts, fmt.Sprintf("a closing %q for the %q at %s", string(closerOf[b.r]), string(b.r), where))
		}
	}
	if len(parts) == 0 && strings.HasSuffix(msg, "expecting ':'") {
		if q := strings.LastIndex(s.expr, "?"); q >= 0 {
			return fmt.Sprintf(`the expression ends too early: the "?" at %s needs ": value-if-false"`, s.posOf(len([]rune(s.expr[:q]))).where(s.expr))
		}
	}
	if len(parts) == 0 {
		return "the expression ends too early"
	}
	return "the expression ends too early: " + joinAnd(parts)
}

func joinAnd(parts []string) string {
	if len(parts) == 1 {
		return parts[0]
	}
	return strings.Join(parts[:len(parts)-1], ", ") + ", and " + parts[len(parts)-1]
}

// unexpected explains a token the parser did not expect.
func unexpected(s *sourceText, p pos, tok, expecting string) string {
	if tok == "<EOF>" {
		return endsTooEarly(s, p, "expecting "+expecting)
	}
	msg := fmt.Sprintf("unexpected %q", tok)
	if len([]rune(tok)) == 1 {
		if r := []rune(tok)[0]; r == ')' || r == ']' || r == '}' {
			open := s.brackets(s.offset(p))
			if len(open) == 0 || closerOf[open[len(open)-1].r] != r {
				var opener rune
				for o, c := range closerOf {
					if c == r {
						opener = o
					}
				}
				return msg + fmt.Sprintf(": there is no %q for it to close", string(opener))
			}
		}
	}
	switch {
	case expecting == "<EOF>":
		return msg + ": the expression is already complete before it (is an operator such as ==, && or + missing?)"
	case strings.Contains(expecting, "IDENTIFIER") && strings.Contains(expecting, "NUM_INT"):
		return msg + ": a value was expected here"
	case strings.Contains(expecting, "IDENTIFIER"):
		return msg + ": a name was expected here"
	}
	if want := expectedTokens(expecting); want != "" {
		return msg + ": expected " + want
	}
	return msg
}

// expectedTokens renders an ANTLR expected set ({']', ','} or ':') in
// words, or "" when it holds token classes.
func expectedTokens(set string) string {
	set = strings.TrimSuffix(strings.TrimPrefix(set, "{"), "}")
	var out []string
	for _, t := range strings.Split(set, ", ") {
		t = strings.TrimSpace(t)
		if len(t) < 3 || t[0] != '\'' || t[len(t)-1] != '\'' {
			return ""
		}
		out = append(out, fmt.Sprintf("%q", t[1:len(t)-1]))
	}
	return strings.Join(out, " or ")
}

// tokenAt returns the token starting at p: a word, or one character.
func tokenAt(s *sourceText, p pos) string {
	off := s.offset(p)
	if off >= len(s.runes) {
		return ""
	}
	end := off
	for end < len(s.runes) && (unicode.IsLetter(s.runes[end]) || unicode.IsDigit(s.runes[end]) || s.runes[end] == '_') {
		end++
	}
	if end == off {
		end++
	}
	return string(s.runes[off:end])
}

// operatorNames are CEL's internal operator function names as written.
var operatorNames = map[string]string{
	"_+_": "+", "_-_": "-", "_*_": "*", "_/_": "/", "_%_": "%",
	"_==_": "==", "_!=_": "!=", "_<_": "<", "_<=_": "<=", "_>_": ">", "_>=_": ">=",
	"_&&_": "&&", "_||_": "||", "!_": "!", "-_": "-", "@in": "in",
	"_[_]": "[]", "_[?_]": "[?]", "_?._": ".?", "_?_:_": "? :",
}

// describeCheck puts one checker (or macro) error in words. The position
// of a function error moves from the "(" to the function's name.
func describeCheck(s *sourceText, p pos, msg string) (pos, string) {
	if m := reUndeclared.FindStringSubmatch(msg); m != nil {
		name := m[1]
		if fp, ok := funcNameAt(s, p, name); ok {
			return fp, unknownName("function", name, knownFunctions)
		}
		return p, unknownName("name", name, knownVariables)
	}
	if m := reNoOverload.FindStringSubmatch(msg); m != nil {
		fn, args := m[1], m[2]
		if op, ok := operatorNames[fn]; ok {
			types := splitTypes(strings.TrimSuffix(strings.TrimPrefix(args, "("), ")"))
			switch {
			case fn == "_?_:_" && len(types) == 3:
				return p, fmt.Sprintf(`the condition before "?" must be a bool, not %s`, article(types[0]))
			case len(types) == 2 && op == "%":
				return p, fmt.Sprintf(`"%%" cannot combine %s and %s: it works on ints only, so convert with int(...)`, article(types[0]), article(types[1]))
			case len(types) == 2 && op == "+":
				return p, fmt.Sprintf("%q cannot combine %s and %s: convert one side, with string(...), int(...) or double(...)", op, article(types[0]), article(types[1]))
			case len(types) == 2 && (op == "-" || op == "*" || op == "/"):
				return p, fmt.Sprintf("%q cannot combine %s and %s: convert one side, with int(...) or double(...)", op, article(types[0]), article(types[1]))
			case len(types) == 2:
				return p, fmt.Sprintf("%q cannot compare or combine %s and %s", op, article(types[0]), article(types[1]))
			case len(types) == 1:
				return p, fmt.Sprintf("%q cannot be applied to %s", op, article(types[0]))
			}
			return p, fmt.Sprintf("%q cannot be applied to %s", op, args)
		}
		if i := strings.Index(args, ".("); i >= 0 && !strings.HasPrefix(args, "(") {
			args = args[i+1:]
		}
		if fp, ok := funcNameAt(s, p, fn); ok {
			p = fp
		}
		return p, fmt.Sprintf("%s() does not accept %s", fn, args)
	}
	if m := reExpectedTyp.FindStringSubmatch(msg); m != nil {
		return p, fmt.Sprintf("%s is needed here, not %s", article(m[1]), article(m[2]))
	}
	if msg == "invalid argument to has() macro" {
		return p, "has() takes a field, such as has(claims.hd)"
	}
	return p, describeOther(msg)
}

// describeOther is cel-go's message for what has no words of its own.
func describeOther(msg string) string {
	msg = strings.TrimPrefix(msg, "Syntax error: ")
	if i := strings.Index(msg, " (in container '"); i >= 0 {
		msg = msg[:i]
	}
	return msg
}

// funcNameAt reports where the name of function name starts when p is the
// "(" of its call.
func funcNameAt(s *sourceText, p pos, name string) (pos, bool) {
	off := s.offset(p)
	if off >= len(s.runes) || s.runes[off] != '(' {
		return p, false
	}
	short := name[strings.LastIndex(name, ".")+1:]
	start := off - len([]rune(short))
	if start < 0 || string(s.runes[start:off]) != short {
		return p, false
	}
	if full := off - len([]rune(name)); full >= 0 && string(s.runes[full:off]) == name {
		start = full
	}
	return s.posOf(start), true
}

var knownVariables = []string{varClaims, varSources, varConnector}

// knownFunctions are suggested for a misspelt function, with the names
// people bring from other languages.
var knownFunctions = []string{
	"lowerAscii", "upperAscii", "emailDomain", "lookup", "size", "contains", "startsWith",
	"endsWith", "matches", "exists", "all", "filter", "map", "has", "split", "join",
	"replace", "trim", "substring", "indexOf", "lastIndexOf", "orValue", "optMap",
	"optFlatMap", "hasValue", "value", "first", "last", "distinct", "flatten", "sort",
	"slice", "string", "int", "double", "bool", "format", "exists_one", "charAt",
}

var aliases = map[string]string{
	"lower": "lowerAscii", "toLower": "lowerAscii", "toLowerCase": "lowerAscii", "lowercase": "lowerAscii",
	"upper": "upperAscii", "toUpper": "upperAscii", "toUpperCase": "upperAscii", "uppercase": "upperAscii",
	"len": "size", "length": "size", "count": "size", "includes": "contains", "any": "exists",
	"every": "all", "strip": "trim", "default": "orValue", "get": "orValue", "str": "string",
}

func unknownName(kind, name string, known []string) string {
	msg := fmt.Sprintf("unknown %s %q", kind, name)
	if s, ok := aliases[name]; ok && kind == "function" {
		return msg + fmt.Sprintf("; did you mean %q?", s)
	}
	best, bestD := "", 3
	for _, k := range known {
		if d := editDistance(strings.ToLower(name), strings.ToLower(k)); d < bestD {
			best, bestD = k, d
		}
	}
	if best != "" && best != name {
		return msg + fmt.Sprintf("; did you mean %q?", best)
	}
	if kind == "name" {
		return msg + ": an expression reads claims, sources and connector"
	}
	return msg
}

func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			c := 1
			if ra[i-1] == rb[j-1] {
				c = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+c)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}

// splitTypes splits "string, list(int), map(string, dyn)" at the top level.
func splitTypes(s string) []string {
	var out []string
	depth, start := 0, 0
	for i, r := range s {
		switch r {
		case '(':
			depth++
		case ')':
			depth--
		case ',':
			if depth == 0 {
				out = append(out, strings.TrimSpace(s[start:i]))
				start = i + 1
			}
		}
	}
	if strings.TrimSpace(s) != "" {
		out = append(out, strings.TrimSpace(s[start:]))
	}
	return out
}

// article prefixes a type name: "an int", "a string", "null".
func article(t string) string {
	switch {
	case t == "null_type" || t == "null":
		return "null"
	case t == "dyn":
		return "a value of any type (dyn)"
	case t == "":
		return t
	case strings.ContainsRune("aeiou", rune(t[0])):
		return "an " + t
	}
	return "a " + t
}
