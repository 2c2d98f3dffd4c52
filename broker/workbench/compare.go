package workbench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/fedbroker/fedbroker/broker/runtime"
)

// Sample is a saved sample identity: the object form of `fedbroker mapping
// test` (the --golden layout's NAME.json), or one saved in the console
// session.
type Sample struct {
	Name string `json:"name"`
	// Origin is "directory" (admin.workbench.samples_dir) or "session".
	Origin string               `json:"origin"`
	Input  runtime.MappingInput `json:"input"`
}

// MaxSamples bounds the samples read from the directory.
const MaxSamples = 500

// LoadSamples reads every NAME.json of dir (admin.workbench.samples_dir),
// in name order. A sample that does not name its connector or does not
// read is returned as a problem, and the others still load.
func LoadSamples(dir string) ([]Sample, []string, error) {
	if dir == "" {
		return nil, nil, nil
	}
	paths, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, nil, err
	}
	sort.Strings(paths)
	if len(paths) > MaxSamples {
		paths = paths[:MaxSamples]
	}
	var out []Sample
	var problems []string
	for _, p := range paths {
		name := strings.TrimSuffix(filepath.Base(p), ".json")
		b, err := os.ReadFile(p)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", name, err))
			continue
		}
		if len(b) > MaxInputBytes {
			problems = append(problems, fmt.Sprintf("%s: larger than %d KiB", name, MaxInputBytes>>10))
			continue
		}
		in, form, err := ParseInput(string(b))
		switch {
		case err != nil:
			problems = append(problems, fmt.Sprintf("%s: %v", name, err))
			continue
		case form != FormSample || in.Connector == "":
			problems = append(problems, fmt.Sprintf(`%s: a sample must name its connector: {"connector": ID, "claims": {...}}`, name))
			continue
		}
		out = append(out, Sample{Name: name, Origin: "directory", Input: in})
	}
	return out, problems, nil
}

// Comparison is the draft against the running mapping on one sample.
type Comparison struct {
	Sample Sample `json:"sample"`
	// Status is "same", "differs" or "skipped" (the sample is for a
	// connector or workload issuer the draft does not replace the
	// mapping of).
	Status string `json:"status"`
	Note   string `json:"note,omitempty"`
	// Diff lists every differing field of the reports, running (-)
	// against draft (+).
	Diff    []Difference           `json:"diff,omitempty"`
	Running *runtime.MappingReport `json:"running,omitempty"`
	Draft   *runtime.MappingReport `json:"draft,omitempty"`
}

// Difference is one differing field: its path in the report, and its
// value under the running mapping and under the draft (JSON, or
// "(absent)").
type Difference struct {
	Path    string `json:"path"`
	Running string `json:"running"`
	Draft   string `json:"draft"`
}

// Compare runs the draft, in place of target's mapping, and the running
// mapping on every sample and reports each one's difference. A sample of
// another connector or workload issuer is compared when it runs the same
// named mapping (the draft would replace it there too), and skipped
// otherwise. The reports are those of `fedbroker mapping test` without
// --explain.
func (w *Workbench) Compare(ctx context.Context, target Target, draft *Draft, samples []Sample) ([]Comparison, error) {
	if draft == nil || !draft.OK() {
		return nil, fmt.Errorf("the draft mapping does not compile")
	}
	ti, err := w.Info(target)
	if err != nil {
		return nil, err
	}
	out := make([]Comparison, 0, len(samples))
	for _, s := range samples {
		c := Comparison{Sample: s}
		st := Target{ID: s.Input.Connector, Workload: s.Input.Workload}
		si, err := w.Info(st)
		switch {
		case err != nil:
			c.Status, c.Note = "skipped", err.Error()
		case st != target && (ti.MappingName == "" || si.MappingName != ti.MappingName):
			c.Status, c.Note = "skipped", fmt.Sprintf("for %s, which runs the %s, not the draft's", st.ID, si.MappingLabel())
		}
		if c.Status != "" {
			out = append(out, c)
			continue
		}
		m, typ, err := w.running(st)
		if err != nil {
			c.Status, c.Note = "skipped", err.Error()
			out = append(out, c)
			continue
		}
		running := runtime.RunMapping(ctx, m, typ, s.Input, false)
		drafted := runtime.RunMapping(ctx, draft.Mapping, typ, s.Input, false)
		c.Running, c.Draft = &running, &drafted
		c.Diff = DiffReports(running, drafted)
		c.Status = "same"
		if len(c.Diff) > 0 {
			c.Status = "differs"
		}
		out = append(out, c)
	}
	return out, nil
}

// DiffReports compares two reports by value, field by field (claims by
// name), as `fedbroker mapping test --golden` does.
func DiffReports(a, b runtime.MappingReport) []Difference {
	var x, y any
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	_ = json.Unmarshal(ja, &x)
	_ = json.Unmarshal(jb, &y)
	out := DiffJSON(x, y)
	for i := range out {
		if out[i].Path == "" {
			out[i].Path = "(whole report)"
		}
	}
	return out
}

// DiffJSON compares two decoded JSON values by value (key order does not
// matter) and returns one Difference per differing leaf, with its path
// (.name, ["odd key"], [i]; "" for the whole value), the first value as
// Running and the second as Draft, each as compact JSON or "(absent)".
// `fedbroker mapping test --golden` prints the same differences.
func DiffJSON(a, b any) []Difference {
	var out []Difference
	diffValues(&out, "", a, b, true, true)
	return out
}

func diffValues(out *[]Difference, path string, a, b any, hasA, hasB bool) {
	if hasA && hasB {
		switch av := a.(type) {
		case map[string]any:
			if bv, ok := b.(map[string]any); ok {
				keys := sortedKeys(av)
				for k := range bv {
					if _, ok := av[k]; !ok {
						keys = append(keys, k)
					}
				}
				sort.Strings(keys)
				for _, k := range keys {
					x, inA := av[k]
					y, inB := bv[k]
					diffValues(out, keyPath(path, k), x, y, inA, inB)
				}
				return
			}
		case []any:
			if bv, ok := b.([]any); ok {
				for i := 0; i < max(len(av), len(bv)); i++ {
					var x, y any
					if i < len(av) {
						x = av[i]
					}
					if i < len(bv) {
						y = bv[i]
					}
					diffValues(out, path+"["+strconv.Itoa(i)+"]", x, y, i < len(av), i < len(bv))
				}
				return
			}
		}
		if reflect.DeepEqual(a, b) {
			return
		}
	}
	*out = append(*out, Difference{Path: path, Running: present(a, hasA), Draft: present(b, hasB)})
}

var plainKey = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*$`)

func keyPath(path, k string) string {
	if plainKey.MatchString(k) {
		if path == "" {
			return k
		}
		return path + "." + k
	}
	return path + "[" + strconv.Quote(k) + "]"
}

func present(v any, ok bool) string {
	if !ok {
		return "(absent)"
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Sprint(v)
	}
	return strings.TrimSuffix(buf.String(), "\n")
}
