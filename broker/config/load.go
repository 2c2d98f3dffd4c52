package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/fedbroker/fedbroker/mapping/spec"
	"github.com/fedbroker/fedbroker/problem"
)

// Load reads the file at path, expands ${VAR} from the process environment,
// decodes, applies defaults and validates it. Any problems come back
// together as Errors, each with its YAML path and its line in the file
// ("clients[1].id: line 14: duplicate of clients[0].id"; see Lines.Line
// for a key that is not written); a file that cannot be read is a plain
// wrapped error.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cfg, ps, lines := decode(data, os.Getenv)
	if len(ps) > 0 {
		return nil, lines.Locate(ps)
	}
	return cfg, nil
}

// Parse is Load on bytes already read, with getenv standing in for the
// environment (it returns "" for an unset variable; an empty variable
// counts as unset). Expansion happens in scalar values only, in one pass;
// see expandNode for the syntax. On any problem Parse returns a nil
// *Config and an Errors listing every parse and validation problem, each
// with its YAML path; only the problems found while reading the YAML
// (syntax, unknown keys, types, ${VAR}) name their line, as data need not
// be a file anyone can open. Load, Inspect and Lines place every problem
// at its line.
func Parse(data []byte, getenv func(string) string) (*Config, error) {
	cfg, ps, _ := decode(data, getenv)
	if len(ps) > 0 {
		return nil, Errors(ps)
	}
	return cfg, nil
}

// Inspect is Load for tools that report problems rather than serve: it
// returns the configuration as far as it decoded (defaults applied)
// together with every problem, so that later checks (connector blocks,
// mappings) can report theirs in the same pass. The Config is nil only when
// the file is not YAML at all or its aliases are refused (a cycle, or more
// than maxAliasNodes values added). A Config that comes with problems must
// never be served. Every problem names its line, as with Load; a file
// that is not YAML is one problem at SyntaxPath.
func Inspect(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cfg, ps, lines := decode(data, os.Getenv)
	if len(ps) > 0 {
		return cfg, lines.Locate(ps)
	}
	return cfg, nil
}

// decode parses, expands, decodes, applies defaults and validates. The
// Lines it returns are those of data's tree, for placing the problems.
func decode(data []byte, getenv func(string) string) (*Config, problems, *Lines) {
	var ps problems
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, problems{{Path: SyntaxPath, Message: syntaxMessage(err, data)}}, nil
	}
	if p := checkAliases(&root); p != nil {
		return nil, problems{*p}, nil
	}
	lines := linesOfTree(&root)
	cfg := new(Config)
	if root.Kind != 0 {
		expandNode(&root, "", getenv, &ps)
		checkNode(&root, reflect.TypeFor[Config](), "", &ps)
		if err := root.Decode(cfg); err != nil && len(ps) == 0 {
			// checkNode found nothing yet the decoder did: report it as is,
			// at its line when it has one.
			msg := strings.TrimPrefix(err.Error(), "yaml: ")
			var te *yaml.TypeError
			if errors.As(err, &te) && len(te.Errors) > 0 {
				msg = te.Errors[0]
			}
			ps.Add("", "%s", msg)
		}
	}
	cfg.SetDefaults()
	bad := append(problems(nil), ps...)
	for _, p := range cfg.Validate() {
		if !under(p.Path, bad) {
			ps = append(ps, p)
		}
	}
	return cfg, ps, lines
}

// syntaxMessage is a YAML syntax error with its line. The YAML parser
// leaves the line out when the error is on the first line, and for an
// unknown anchor, whose first use is found here. It counts the lines of
// its parser errors (parserProblems) from 0, and gives the line of the
// problem instead when the construct at fault starts on the first line;
// parsing the text again one line down gives the construct's line, counted
// from 1, in both cases.
func syntaxMessage(err error, data []byte) string {
	msg := syntaxMessageAt(err, data)
	// An error at the end of the input (an unclosed "[" on the last line)
	// is counted by the parser on the line after it: it belongs to the
	// last line of the file.
	p := Problem{Message: msg}
	if n, last := p.Line(), bytes.Count(data, []byte("\n"))+1; n > last {
		_, rest, _ := strings.Cut(msg, ": ")
		return fmt.Sprintf("line %d: %s", last, rest)
	}
	return msg
}

func syntaxMessageAt(err error, data []byte) string {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if text := (Problem{Message: msg}).Line(); text != 0 || parserProblems[msg] {
		_, problem, _ := strings.Cut(msg, ": ")
		if text == 0 {
			problem = msg
		}
		if !parserProblems[problem] {
			return msg
		}
		if blockProblems[problem] {
			if n := firstFailingLine(data, problem); n != 0 {
				return fmt.Sprintf("line %d: %s", n, problem)
			}
		}
		var root yaml.Node
		err := yaml.Unmarshal(append([]byte("\n"), data...), &root)
		if err != nil {
			shifted := strings.TrimPrefix(err.Error(), "yaml: ")
			if n := (Problem{Message: shifted}).Line(); n != 0 && strings.HasSuffix(shifted, ": "+problem) {
				return fmt.Sprintf("line %d: %s", n, problem)
			}
		}
		return fmt.Sprintf("line %d: %s", text+1, problem)
	}
	if name, ok := strings.CutPrefix(msg, "unknown anchor '"); ok {
		name = strings.TrimSuffix(name, "' referenced")
		for i, l := range strings.Split(string(data), "\n") {
			if aliasUse(l, name) {
				return fmt.Sprintf("line %d: %s", i+1, msg)
			}
		}
	}
	return "line 1: " + msg
}

// parserProblems are the errors of the YAML parser (as opposed to its
// scanner), whose lines it counts from 0.
var parserProblems = map[string]bool{
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"did not find expected '-' indicator":    true,
	"did not find expected <document start>": true,
	"did not find expected <stream-start>":   true,
	"did not find expected key":              true,
	"did not find expected node content":     true,
	"found duplicate %TAG directive":         true,
	"found duplicate %YAML directive":        true,
	"found incompatible YAML document":       true,
	"found undefined tag handle":             true,
}

// blockProblems are parser errors in a block mapping or list, which the
// parser reports at the line where the mapping or list starts (often the
// first line of the file). The line at fault is the first one that, read
// with all the lines before it, fails the same way.
var blockProblems = map[string]bool{
	"did not find expected key":           true,
	"did not find expected '-' indicator": true,
}

// firstFailingLine returns the first line n such that the first n lines
// of data fail to parse with problem, or 0. A block construct may end at
// any line, so every shorter prefix parses and every longer one fails: a
// binary search finds n.
func firstFailingLine(data []byte, problem string) int {
	lines := strings.SplitAfter(string(data), "\n")
	fails := func(n int) bool {
		var root yaml.Node
		err := yaml.Unmarshal([]byte(strings.Join(lines[:n], "")), &root)
		return err != nil && strings.HasSuffix(err.Error(), problem)
	}
	if !fails(len(lines)) {
		return 0
	}
	lo, hi := 1, len(lines) // fails(hi)
	for lo < hi {
		mid := (lo + hi) / 2
		if fails(mid) {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo
}

// aliasUse reports whether line holds the alias *name as a whole token.
func aliasUse(line, name string) bool {
	for rest := line; ; {
		i := strings.Index(rest, "*"+name)
		if i < 0 {
			return false
		}
		rest = rest[i+1+len(name):]
		if rest == "" || strings.ContainsRune(" \t\r,[]{}#", rune(rest[0])) {
			return true
		}
	}
}

// maxAliasNodes bounds how many values YAML aliases may add to a file.
// The checks walk an alias's value each time it is used, so without a
// bound a few lines of nested anchors (a "billion laughs") would keep
// Load busy for minutes; a real configuration adds a few hundred.
const maxAliasNodes = 100_000

// checkAliases refuses what YAML aliases could do to the walks over the
// tree: an alias inside the value it refers to (a cycle, which would
// never end), and aliases that together add more than maxAliasNodes
// values. It takes time in proportion to the file.
func checkAliases(root *yaml.Node) *Problem {
	size := make(map[*yaml.Node]int) // values under a node, aliases expanded
	open := make(map[*yaml.Node]bool)
	added := 0
	var bad *Problem
	var walk func(n *yaml.Node) int
	walk = func(n *yaml.Node) int {
		if bad != nil {
			return 0
		}
		if n.Kind == yaml.AliasNode && n.Alias != nil {
			if open[n.Alias] {
				bad = &Problem{Path: SyntaxPath, Message: fmt.Sprintf("line %d: alias *%s is inside the value it refers to", n.Line, n.Value)}
				return 0
			}
			s := walk(n.Alias)
			if added += s; added > maxAliasNodes && bad == nil {
				bad = &Problem{Path: SyntaxPath, Message: fmt.Sprintf("line %d: YAML aliases (here *%s) expand the file by more than %d values: write the values out or use fewer aliases", n.Line, n.Value, maxAliasNodes)}
			}
			return s
		}
		if s, ok := size[n]; ok {
			return s
		}
		open[n] = true
		s := 1
		for _, c := range n.Content {
			s = min(s+walk(c), maxAliasNodes+1)
		}
		delete(open, n)
		size[n] = s
		return s
	}
	walk(root)
	return bad
}

// under reports whether path is at or below a path that already has a
// parse problem, so that a value that failed to decode is not reported a
// second time as missing.
func under(path string, parsed problems) bool { return problem.List(parsed).Covers(path) }

// Defaults.
const (
	DefaultAddr            = "127.0.0.1:5556"
	DefaultStorage         = "sqlite"
	DefaultAlgorithm       = "ES256"
	DefaultRotation        = 24 * time.Hour
	DefaultIDToken         = 5 * time.Minute
	DefaultAccessToken     = 5 * time.Minute
	DefaultRefreshIdle     = 24 * time.Hour
	DefaultRefreshAbsolute = 720 * time.Hour
	DefaultAuthCode        = 60 * time.Second
	DefaultAuthRequest     = 10 * time.Minute
	DefaultSession         = 12 * time.Hour
	DefaultSQLitePath      = "fedbroker.db"
	DefaultKeyPrefix       = "fb"
	DefaultEvictionPolicy  = "refuse"
)

// DefaultScopes and DefaultGrantTypes are what a client gets when it lists
// none. Callers must not modify them.
var (
	DefaultScopes     = []string{"openid", "profile", "email", "groups", "offline_access"}
	DefaultGrantTypes = []string{"authorization_code", "refresh_token"}
)

// SetDefaults fills every unset field that has a default (see the field
// comments in config.go). It is idempotent; Parse calls it.
func (c *Config) SetDefaults() {
	setString(&c.HTTP.Addr, DefaultAddr)
	setString(&c.Storage.Type, DefaultStorage)
	setString(&c.Storage.Redis.KeyPrefix, DefaultKeyPrefix)
	if c.Storage.Type == "sqlite" {
		setString(&c.Storage.SQLite.Path, DefaultSQLitePath)
	}
	setString(&c.Storage.Redis.EvictionPolicy, DefaultEvictionPolicy)
	setString(&c.Signing.Algorithm, DefaultAlgorithm)
	setDuration(&c.Signing.RotationPeriod, DefaultRotation)
	t := &c.Tokens
	setDuration(&t.IDToken, DefaultIDToken)
	setDuration(&t.AccessToken, DefaultAccessToken)
	setDuration(&t.RefreshIdle, DefaultRefreshIdle)
	setDuration(&t.RefreshAbsolute, DefaultRefreshAbsolute)
	setDuration(&t.AuthCode, DefaultAuthCode)
	setDuration(&t.AuthRequest, DefaultAuthRequest)
	setDuration(&t.Session, DefaultSession)
	if c.Mappings == nil {
		c.Mappings = make(map[string]spec.Spec)
	}
	c.applyProfileDefaults()
	for i := range c.Clients {
		cl := &c.Clients[i]
		if len(cl.Audiences) == 0 && cl.ID != "" {
			cl.Audiences = []string{cl.ID}
		}
		if len(cl.Scopes) == 0 {
			cl.Scopes = append([]string(nil), DefaultScopes...)
		}
		if len(cl.GrantTypes) == 0 {
			cl.GrantTypes = append([]string(nil), DefaultGrantTypes...)
		}
	}
}

func setString(p *string, def string) {
	if *p == "" {
		*p = def
	}
}

func setDuration(p *time.Duration, def time.Duration) {
	if *p == 0 {
		*p = def
	}
}
