// Package problem is the one shape of a configuration problem shared by the
// broker's configuration, every connector's Config.Validate and the mapping
// compiler. A problem names where it is, as a YAML path such as
// "connectors[2].config.users[0].email", and what is wrong there. Paths are
// relative to the block that was checked; the caller that knows where that
// block sits in the file places them with Prefix. The package imports only
// the standard library, so any library can report problems in this shape.
//
// Where the problem is in the file, when known, starts its Message:
// "line 12: unknown key". A check that reads the YAML tree writes it there;
// the problems of a check that knows only the path are placed afterwards
// with Locate, by the caller that has the file.
package problem

import (
	"fmt"
	"strconv"
	"strings"
)

// Problem is one configuration problem at Path. An empty Path means the
// checked block (or the file) as a whole.
type Problem struct {
	Path    string
	Message string
}

// Error returns "path: message", or the message alone when Path is empty.
func (p Problem) Error() string {
	if p.Path == "" {
		return p.Message
	}
	return p.Path + ": " + p.Message
}

// Line returns the line the problem's Message starts with ("line 12: …"),
// or 0 when it names none.
func (p Problem) Line() int {
	rest, ok := strings.CutPrefix(p.Message, "line ")
	if !ok {
		return 0
	}
	num, _, ok := strings.Cut(rest, ": ")
	if !ok {
		return 0
	}
	n, err := strconv.Atoi(num)
	if err != nil || n < 1 || strconv.Itoa(n) != num {
		return 0
	}
	return n
}

// AtLine returns p with "line n: " before its Message, so that it prints
// as "path: line n: message". A problem that already names its line, or a
// line below 1, leaves p as it is.
func (p Problem) AtLine(n int) Problem {
	if n < 1 || p.Line() != 0 {
		return p
	}
	p.Message = fmt.Sprintf("line %d: %s", n, p.Message)
	return p
}

// List is every problem found in one check, in the order they were found.
// A non-empty List is an error; use Err to return it, so that an empty List
// becomes a nil error.
type List []Problem

// Error lists every problem, one per line.
func (l List) Error() string {
	lines := make([]string, len(l))
	for i, p := range l {
		lines[i] = p.Error()
	}
	return strings.Join(lines, "\n")
}

// Err returns l as an error, or nil when l is empty.
func (l List) Err() error {
	if len(l) == 0 {
		return nil
	}
	return l
}

// Add appends a problem at path with a message formatted as by fmt.Sprintf.
func (l *List) Add(path, format string, args ...any) {
	*l = append(*l, Problem{Path: path, Message: fmt.Sprintf(format, args...)})
}

// Prefix returns a new List holding every problem of ps with its path
// placed under prefix, as by Join. It is how a block's problems, relative
// to the block, are reported at the block's path in the file.
func Prefix(prefix string, ps []Problem) List {
	if len(ps) == 0 {
		return nil
	}
	out := make(List, len(ps))
	for i, p := range ps {
		out[i] = Problem{Path: Join(prefix, p.Path), Message: p.Message}
	}
	return out
}

// Locate returns a new List holding every problem of l placed at its line,
// as by AtLine: line maps a problem's Path to its line in the file (0 when
// it cannot tell). A problem that names its line already keeps it.
func (l List) Locate(line func(path string) int) List {
	if len(l) == 0 {
		return nil
	}
	out := make(List, len(l))
	for i, p := range l {
		if p.Line() == 0 {
			p = p.AtLine(line(p.Path))
		}
		out[i] = p
	}
	return out
}

// Join appends the relative path rel to path: Join("clients[0]", "id") is
// "clients[0].id", Join("users", "[2].email") is "users[2].email", and an
// empty side yields the other one unchanged.
func Join(path, rel string) string {
	switch {
	case path == "":
		return rel
	case rel == "":
		return path
	case strings.HasPrefix(rel, "["):
		return path + rel
	}
	return path + "." + rel
}

// Covers reports whether l has a problem at path or at a path above it
// ("clients[0]" covers "clients[0].id" and "clients[0].scopes[1]"). A
// problem of the file as a whole (empty Path) covers nothing.
func (l List) Covers(path string) bool {
	for _, p := range l {
		if p.Path == "" {
			continue
		}
		if path == p.Path || strings.HasPrefix(path, p.Path+".") || strings.HasPrefix(path, p.Path+"[") {
			return true
		}
	}
	return false
}

// Merge returns l followed by the problems of more that l does not cover:
// a later check that finds a fault already reported, in its own words,
// adds nothing.
func (l List) Merge(more []Problem) List {
	out := append(List(nil), l...)
	for _, p := range more {
		if p.Path == "" || !l.Covers(p.Path) {
			out = append(out, p)
		}
	}
	return out
}
