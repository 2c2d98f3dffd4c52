package config

import (
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
// together as Errors, each with its YAML path; a file that cannot be read is
// a plain wrapped error.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(data, os.Getenv)
}

// Parse is Load on bytes already read, with getenv standing in for the
// environment (it returns "" for an unset variable; an empty variable
// counts as unset). Expansion happens in scalar values only, in one pass;
// see expandNode for the syntax. On any problem Parse returns a nil
// *Config and an Errors listing every parse and validation problem.
func Parse(data []byte, getenv func(string) string) (*Config, error) {
	cfg, ps := decode(data, getenv)
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
// never be served.
func Inspect(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cfg, ps := decode(data, os.Getenv)
	if len(ps) > 0 {
		return cfg, Errors(ps)
	}
	return cfg, nil
}

// decode parses, expands, decodes, applies defaults and validates.
func decode(data []byte, getenv func(string) string) (*Config, problems) {
	var ps problems
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, problems{{Message: syntaxMessage(err, data)}}
	}
	if p := checkAliases(&root); p != nil {
		return nil, problems{*p}
	}
	cfg := new(Config)
	if root.Kind != 0 {
		expandNode(&root, "", getenv, &ps)
		checkNode(&root, reflect.TypeFor[Config](), "", &ps)
		if err := root.Decode(cfg); err != nil && len(ps) == 0 {
			// checkNode found nothing yet the decoder did: report it as is.
			ps.Add("", "%s", strings.TrimPrefix(err.Error(), "yaml: "))
		}
	}
	cfg.SetDefaults()
	bad := append(problems(nil), ps...)
	for _, p := range cfg.Validate() {
		if !under(p.Path, bad) {
			ps = append(ps, p)
		}
	}
	return cfg, ps
}

// syntaxMessage is a YAML syntax error with its line. The YAML parser
// leaves the line out when the error is on the first line, and for an
// unknown anchor, whose first use is found here.
func syntaxMessage(err error, data []byte) string {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if strings.HasPrefix(msg, "line ") {
		return msg
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
				bad = &Problem{Message: fmt.Sprintf("line %d: alias *%s is inside the value it refers to", n.Line, n.Value)}
				return 0
			}
			s := walk(n.Alias)
			if added += s; added > maxAliasNodes && bad == nil {
				bad = &Problem{Message: fmt.Sprintf("line %d: YAML aliases (here *%s) expand the file by more than %d values: write the values out or use fewer aliases", n.Line, n.Value, maxAliasNodes)}
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
	DefaultStorage         = "memory"
	DefaultAlgorithm       = "ES256"
	DefaultRotation        = 24 * time.Hour
	DefaultIDToken         = 5 * time.Minute
	DefaultAccessToken     = 5 * time.Minute
	DefaultRefreshIdle     = 24 * time.Hour
	DefaultRefreshAbsolute = 720 * time.Hour
	DefaultAuthCode        = 60 * time.Second
	DefaultAuthRequest     = 10 * time.Minute
	DefaultSession         = 12 * time.Hour
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
