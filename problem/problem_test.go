package problem

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestProblemError(t *testing.T) {
	tests := []struct {
		p    Problem
		want string
	}{
		{Problem{Path: "issuer", Message: "required"}, "issuer: required"},
		{Problem{Message: "cannot read the file"}, "cannot read the file"},
	}
	for _, tt := range tests {
		if got := tt.p.Error(); got != tt.want {
			t.Errorf("%#v.Error() = %q, want %q", tt.p, got, tt.want)
		}
	}
}

func TestList(t *testing.T) {
	var l List
	if err := l.Err(); err != nil {
		t.Errorf("empty List.Err() = %v, want nil", err)
	}
	l.Add("tokens.session", "must be positive, not %s", "0s")
	l.Add("", "file is empty")
	if got, want := l.Error(), "tokens.session: must be positive, not 0s\nfile is empty"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	var got List
	if !errors.As(l.Err(), &got) || len(got) != 2 {
		t.Errorf("errors.As(Err()) = %v, want the two problems", got)
	}
}

func TestPrefix(t *testing.T) {
	ps := []Problem{{Path: "users[0].email", Message: "a"}, {Path: "", Message: "b"}, {Path: "[1]", Message: "c"}}
	got := Prefix("connectors[2].config", ps)
	want := List{
		{Path: "connectors[2].config.users[0].email", Message: "a"},
		{Path: "connectors[2].config", Message: "b"},
		{Path: "connectors[2].config[1]", Message: "c"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Prefix (-want +got):\n%s", diff)
	}
	if ps[0].Path != "users[0].email" {
		t.Errorf("Prefix changed its input: %q", ps[0].Path)
	}
	if got := Prefix("x", nil); got != nil {
		t.Errorf("Prefix(x, nil) = %v, want nil", got)
	}
}

func TestJoin(t *testing.T) {
	for _, tt := range []struct{ path, rel, want string }{
		{"", "issuer", "issuer"},
		{"clients[0]", "id", "clients[0].id"},
		{"clients[0]", "", "clients[0]"},
		{"users", "[2].email", "users[2].email"},
	} {
		if got := Join(tt.path, tt.rel); got != tt.want {
			t.Errorf("Join(%q, %q) = %q, want %q", tt.path, tt.rel, got, tt.want)
		}
	}
}

func TestMerge(t *testing.T) {
	first := List{{Path: "clients[0]", Message: "bad client"}, {Path: "connectors[1].mapping", Message: "no mapping"}, {Message: "whole file"}}
	more := []Problem{
		{Path: "clients[0].id", Message: "again"},
		{Path: "clients[01]", Message: "other index"},
		{Path: "connectors[1].mapping", Message: "said again"},
		{Path: "connectors[1].config.users[0]", Message: "new"},
		{Message: "another whole-file problem"},
	}
	got := first.Merge(more)
	want := append(append(List(nil), first...), more[1], more[3], more[4])
	if got.Error() != want.Error() {
		t.Fatalf("Merge =\n%v\nwant\n%v", got, want)
	}
}

func TestLine(t *testing.T) {
	for _, tt := range []struct {
		msg  string
		want int
	}{
		{"line 12: unknown key", 12},
		{"line 1: did not find expected ',' or ']'", 1},
		{"unknown key", 0},
		{"line x: not a number", 0},
		{"line 0: no such line", 0},
		{"line 12:no space", 0},
		{"deadline 3: not a line", 0},
		{"line 99999999999999999999: too big", 0},
	} {
		if got := (Problem{Path: "p", Message: tt.msg}).Line(); got != tt.want {
			t.Errorf("Problem{Message: %q}.Line() = %d, want %d", tt.msg, got, tt.want)
		}
	}
}

func TestAtLine(t *testing.T) {
	p := Problem{Path: "issuer", Message: "required"}
	if got, want := p.AtLine(3), (Problem{Path: "issuer", Message: "line 3: required"}); got != want {
		t.Errorf("AtLine(3) = %#v, want %#v", got, want)
	}
	if got := p.AtLine(0); got != p {
		t.Errorf("AtLine(0) = %#v, want it unchanged", got)
	}
	located := Problem{Path: "x", Message: "line 7: unknown key"}
	if got := located.AtLine(3); got != located {
		t.Errorf("AtLine on a problem with a line = %#v, want it unchanged", got)
	}
	if got, want := p.AtLine(3).Error(), "issuer: line 3: required"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestLocate(t *testing.T) {
	l := List{
		{Path: "a", Message: "m"},
		{Path: "b", Message: "line 3: has its own"},
		{Path: "c", Message: "nowhere"},
		{Message: "whole file"},
	}
	lines := map[string]int{"a": 7, "b": 9, "": 1}
	got := l.Locate(func(path string) int { return lines[path] })
	want := List{
		{Path: "a", Message: "line 7: m"},
		{Path: "b", Message: "line 3: has its own"},
		{Path: "c", Message: "nowhere"},
		{Message: "line 1: whole file"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Locate (-want +got):\n%s", diff)
	}
	if l[0].Message != "m" {
		t.Errorf("Locate changed its input: %q", l[0].Message)
	}
	if got := List(nil).Locate(func(string) int { return 1 }); got != nil {
		t.Errorf("Locate of nil = %v, want nil", got)
	}
}
