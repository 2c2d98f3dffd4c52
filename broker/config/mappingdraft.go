package config

import (
	"reflect"

	"go.yaml.in/yaml/v3"

	"github.com/fedbroker/fedbroker/mapping/spec"
)

// ParseMapping reads the text of one mapping, as written under
// `mappings.NAME:` (require, subject, link, claims, tables), the way Load
// reads that part of a configuration file: YAML syntax, aliases, unknown
// and duplicate keys (with a suggestion), types. Problem paths are
// relative to the mapping ("claims.email", "require[0].expr"); every
// problem names its line in data. ${VAR} is not expanded: the text is a
// draft, not a file the broker serves. The mapping workbench compiles such
// a draft with mapping.Compile, exactly as runtime.Compile compiles a
// configuration's mappings.
func ParseMapping(data []byte) (spec.Spec, Errors) {
	var s spec.Spec
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return s, Errors{{Path: SyntaxPath, Message: syntaxMessage(err, data)}}
	}
	if p := checkAliases(&root); p != nil {
		return s, Errors{*p}
	}
	var ps problems
	if root.Kind != 0 {
		checkNode(&root, reflect.TypeFor[spec.Spec](), "", &ps)
		if len(ps) == 0 {
			if err := root.Decode(&s); err != nil {
				ps.Add("", "%s", typeMessage(err))
			}
		}
	}
	if len(ps) > 0 {
		return spec.Spec{}, linesOfTree(&root).Locate(ps)
	}
	return s, nil
}
