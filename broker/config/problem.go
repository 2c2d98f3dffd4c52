package config

import (
	"fmt"

	"github.com/fedbroker/fedbroker/problem"
)

// Problem is one configuration problem at a YAML path such as
// "clients[0].redirect_uris[2]". An empty Path means the file as a whole.
type Problem = problem.Problem

// Errors is every problem found in one configuration, in file order as far
// as the checks allow. Load and Parse return all of them at once as one
// error.
type Errors = problem.List

// problems collects the Problems of one check.
type problems = problem.List

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
