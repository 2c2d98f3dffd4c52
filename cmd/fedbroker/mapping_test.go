package main

import "testing"

func TestJSONDiff(t *testing.T) {
	for _, tc := range []struct {
		name, want, got, diff string
	}{
		{"equal despite layout and key order",
			`{"a": 1, "b": {"x": [1, 2], "y": "z"}}`,
			`{"b":{"y":"z","x":[1,2]},"a":1.0}`,
			""},
		{"changed claim",
			`{"access_token": {"roles": ["superuser"]}, "subject": "s"}`,
			`{"access_token": {"roles": ["user"]}, "subject": "s"}`,
			"  access_token.roles[0]:\n  - \"superuser\"\n  + \"user\""},
		{"missing and extra claims",
			`{"id_token": {"email": "a@b", "name": ""}}`,
			`{"id_token": {"email": "a@b", "groups": ["x"]}}`,
			"  id_token.groups:\n  - (absent)\n  + [\"x\"]\n  id_token.name:\n  - \"\"\n  + (absent)"},
		{"longer array and odd key",
			`{"c": {"https://acme.com/g": [1]}}`,
			`{"c": {"https://acme.com/g": [1, 2]}}`,
			"  c[\"https://acme.com/g\"][1]:\n  - (absent)\n  + 2"},
		{"type change",
			`{"rule": 1}`,
			`{"rule": "1"}`,
			"  rule:\n  - 1\n  + \"1\""},
		{"whole document",
			`[]`,
			`{}`,
			"  (whole document):\n  - []\n  + {}"},
		{"expected not JSON",
			`{`,
			`{}`,
			"expected output is not JSON: unexpected end of JSON input"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if d := jsonDiff([]byte(tc.want), []byte(tc.got)); d != tc.diff {
				t.Errorf("jsonDiff =\n%s\nwant\n%s", d, tc.diff)
			}
		})
	}
}
