package config

import (
	"fmt"
	"strings"
)

// Problem is one configuration problem at a YAML path such as
// "clients[0].redirect_uris[2]". An empty Path means the file as a whole.
type Problem struct {
	Path    string
	Message string
}

// Error returns "path: message".
func (p Problem) Error() string {
	if p.Path == "" {
		return p.Message
	}
	return p.Path + ": " + p.Message
}

// Errors is every problem found in one configuration, in file order as far
// as the checks allow. Load, Parse and Validate callers get all of them at
// once.
type Errors []Problem

// Error lists every problem, one per line.
func (e Errors) Error() string {
	lines := make([]string, len(e))
	for i, p := range e {
		lines[i] = p.Error()
	}
	return strings.Join(lines, "\n")
}

// problems collects Problems with a printf-style helper.
type problems []Problem

func (ps *problems) add(path, format string, args ...any) {
	*ps = append(*ps, Problem{Path: path, Message: fmt.Sprintf(format, args...)})
}

// join appends a path element: join("clients[0]", "id") is "clients[0].id";
// join("", "issuer") is "issuer".
func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// index appends a sequence index: index("clients", 2) is "clients[2]".
func index(path string, i int) string {
	return fmt.Sprintf("%s[%d]", path, i)
}
