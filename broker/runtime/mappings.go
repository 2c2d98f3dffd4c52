package runtime

import (
	"fmt"
	"sort"

	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/mapping"
)

// resolver is the one place a connector's or workload issuer's mapping is
// chosen and compiled: the named mapping, or the default mapping of its
// type. Every named mapping is compiled once, whether used or not, and its
// problems carry the path "mappings.NAME.…"; a default mapping that does
// not compile, or a name that is not defined, is reported at the owner's
// "….mapping".
type resolver struct {
	cfg      *config.Config
	named    map[string]*mapping.Mapping
	defaults map[string]*mapping.Mapping
	// problems of the named mappings, by name, and all of them in order.
	namedProblems map[string]config.Errors
	problems      config.Errors
}

func newResolver(cfg *config.Config) *resolver {
	r := &resolver{cfg: cfg, named: make(map[string]*mapping.Mapping), defaults: make(map[string]*mapping.Mapping), namedProblems: make(map[string]config.Errors)}
	names := make([]string, 0, len(cfg.Mappings))
	for name := range cfg.Mappings {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		m, errs := mapping.Compile(cfg.Mappings[name], mapping.CompileOptions{})
		for _, e := range errs {
			r.namedProblems[name] = append(r.namedProblems[name], config.Problem{Path: "mappings." + name + "." + e.Path, Message: e.Message})
		}
		r.problems = append(r.problems, r.namedProblems[name]...)
		r.named[name] = m
	}
	return r
}

// resolve returns the mapping named name, or typ's default when name is
// empty. owner is the YAML path of the connector or workload issuer. The
// problems returned are the owner's own; a named mapping's problems are in
// r.problems (reported once, however many use it).
func (r *resolver) resolve(name, typ, owner string) (*mapping.Mapping, config.Errors) {
	if name != "" {
		m, ok := r.named[name]
		if !ok {
			return nil, config.Errors{{Path: owner + ".mapping", Message: fmt.Sprintf("names mapping %q, which is not defined", name)}}
		}
		return m, nil
	}
	if m, ok := r.defaults[typ]; ok {
		return m, nil
	}
	m, errs := mapping.Compile(mapping.Default(typ), mapping.CompileOptions{})
	var ps config.Errors
	for _, e := range errs {
		ps = append(ps, config.Problem{Path: owner + ".mapping", Message: fmt.Sprintf("default mapping for %s does not compile: %s", typ, e.Error())})
	}
	if len(ps) == 0 {
		r.defaults[typ] = m
	}
	return m, ps
}

// CompileMapping compiles the mapping connector id of cfg uses (its named
// mapping, or its type's default) without opening the connector, for a dry
// run. It returns the connector's type.
func CompileMapping(cfg *config.Config, id string) (*mapping.Mapping, string, error) {
	for i, c := range cfg.Connectors {
		if c.ID == id {
			m, err := compileOne(cfg, c.Mapping, c.Type, fmt.Sprintf("connectors[%d]", i))
			return m, c.Type, err
		}
	}
	return nil, "", fmt.Errorf("no connector %q in the configuration", id)
}

// CompileWorkloadMapping compiles the mapping of workload issuer id of cfg.
func CompileWorkloadMapping(cfg *config.Config, id string) (*mapping.Mapping, string, error) {
	for i, w := range cfg.Workloads {
		if w.ID == id {
			m, err := compileOne(cfg, w.Mapping, "workload", fmt.Sprintf("workloads[%d]", i))
			return m, "workload", err
		}
	}
	return nil, "", fmt.Errorf("no workload issuer %q in the configuration", id)
}

func compileOne(cfg *config.Config, name, typ, owner string) (*mapping.Mapping, error) {
	r := newResolver(cfg)
	m, ps := r.resolve(name, typ, owner)
	ps = append(ps, r.namedProblems[name]...)
	if len(ps) > 0 {
		return nil, ps
	}
	return m, nil
}
