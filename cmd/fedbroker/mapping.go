package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/runtime"
)

func newMappingCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "mapping", Short: "Test claim mappings before users hit them"}
	cmd.AddCommand(newMappingTestCmd())
	return cmd
}

func newMappingTestCmd() *cobra.Command {
	var cfgPath, connector, workloadID, claimsPath, golden string
	var explain, update bool
	cmd := &cobra.Command{
		Use:   "test --config C (--connector ID | --workload ID) --claims sample.json | --golden DIR",
		Short: "Show what a connector's mapping decides for sample upstream claims",
		Long: `mapping test evaluates a connector's mapping on sample upstream claims and
prints the decision (accepted, or rejected with the admin's message), the
internal subject, the link key and the exact ID-token and access-token claims.

--claims takes a JSON file holding the upstream claims, or an object
{"connector": ID, "claims": {...}, "sources": {...}, "upstream_sub": "..."}
(with "workload": true when ID names a workload issuer).

--golden DIR checks every DIR/NAME.json sample (the object form) against
DIR/NAME.golden (the expected report) and exits 1 on any difference; with
--update it writes the .golden files instead.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(cfgPath)
			if err != nil {
				printProblems(cmd.ErrOrStderr(), cfgPath, err)
				return exitCode(1)
			}
			if golden != "" {
				return runGolden(cmd, cfg, golden, update)
			}
			if (connector == "") == (workloadID == "") || claimsPath == "" {
				return errors.New("mapping test: give --connector or --workload, and --claims; or --golden DIR")
			}
			in, err := readSample(claimsPath)
			if err != nil {
				return err
			}
			if in.Connector == "" {
				in.Connector = connector
			}
			if workloadID != "" {
				in.Connector, in.Workload = workloadID, true
			}
			rep, err := evaluate(cmd, cfg, in, explain)
			if err != nil {
				return err
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetEscapeHTML(false)
			enc.SetIndent("", "  ")
			if err := enc.Encode(rep); err != nil {
				return err
			}
			if rep.Decision != "accepted" {
				return exitCode(2)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&cfgPath, "config", "c", "", "configuration file (required)")
	f.StringVar(&connector, "connector", "", "connector id whose mapping to run")
	f.StringVar(&workloadID, "workload", "", "workload issuer id whose mapping to run")
	f.StringVar(&claimsPath, "claims", "", "JSON file of sample upstream claims")
	f.BoolVar(&explain, "explain", false, "show every expression and its value")
	f.StringVar(&golden, "golden", "", "directory of samples with expected outputs")
	f.BoolVar(&update, "update", false, "with --golden: write the expected outputs")
	_ = cmd.MarkFlagRequired("config")
	return cmd
}

func evaluate(cmd *cobra.Command, cfg *config.Config, in runtime.MappingInput, explain bool) (runtime.MappingReport, error) {
	compile := runtime.CompileMapping
	if in.Workload {
		compile = runtime.CompileWorkloadMapping
	}
	m, typ, err := compile(cfg, in.Connector)
	if err != nil {
		var problems config.Errors
		if errors.As(err, &problems) {
			printProblems(cmd.ErrOrStderr(), "mapping", err)
			return runtime.MappingReport{}, exitCode(1)
		}
		return runtime.MappingReport{}, err
	}
	return runtime.RunMapping(cmd.Context(), m, typ, in, explain), nil
}

// readSample reads either bare claims or a full MappingInput.
func readSample(path string) (runtime.MappingInput, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return runtime.MappingInput{}, err
	}
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(b, &probe); err != nil {
		return runtime.MappingInput{}, fmt.Errorf("%s: not a JSON object: %w", path, err)
	}
	var in runtime.MappingInput
	if _, ok := probe["claims"]; ok {
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&in); err != nil {
			return in, fmt.Errorf("%s: %w", path, err)
		}
		return in, nil
	}
	if err := json.Unmarshal(b, &in.Claims); err != nil {
		return in, fmt.Errorf("%s: %w", path, err)
	}
	return in, nil
}

func runGolden(cmd *cobra.Command, cfg *config.Config, dir string, update bool) error {
	samples, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return err
	}
	if len(samples) == 0 {
		return fmt.Errorf("mapping test: no *.json samples in %s", dir)
	}
	sort.Strings(samples)
	out := cmd.OutOrStdout()
	failed := 0
	for _, path := range samples {
		name := strings.TrimSuffix(filepath.Base(path), ".json")
		in, err := readSample(path)
		if err != nil {
			return err
		}
		if in.Connector == "" {
			return fmt.Errorf("%s: the sample must name its connector", path)
		}
		rep, err := evaluate(cmd, cfg, in, false)
		if err != nil {
			return err
		}
		got, _ := json.MarshalIndent(rep, "", "  ")
		goldenPath := filepath.Join(dir, name+".golden")
		if update {
			if err := os.WriteFile(goldenPath, append(got, '\n'), 0o644); err != nil {
				return err
			}
			fmt.Fprintf(out, "wrote %s\n", goldenPath)
			continue
		}
		want, err := os.ReadFile(goldenPath)
		if err != nil {
			fmt.Fprintf(out, "FAIL %s: %v (run with --update to create it)\n", name, err)
			failed++
			continue
		}
		if diff := jsonDiff(want, got); diff != "" {
			fmt.Fprintf(out, "FAIL %s (-want +got):\n%s\n", name, diff)
			failed++
			continue
		}
		fmt.Fprintf(out, "ok   %s\n", name)
	}
	if failed > 0 {
		fmt.Fprintf(out, "%d of %d samples differ\n", failed, len(samples))
		return exitCode(1)
	}
	return nil
}

// jsonDiff compares two JSON documents by value (key order and layout do
// not matter) and returns one entry per differing claim, with its path, the
// expected value (-) and the actual one (+); "" when they are equal.
func jsonDiff(want, got []byte) string {
	var w, g any
	if err := json.Unmarshal(want, &w); err != nil {
		return "expected output is not JSON: " + err.Error()
	}
	if err := json.Unmarshal(got, &g); err != nil {
		return "actual output is not JSON: " + err.Error()
	}
	if reflect.DeepEqual(w, g) {
		return ""
	}
	var b strings.Builder
	diffValues(&b, "", w, g, true, true)
	return strings.TrimSuffix(b.String(), "\n")
}

// diffValues writes the differences between want and got at path to b.
// hasWant and hasGot are false when the key or element is absent on that
// side.
func diffValues(b *strings.Builder, path string, want, got any, hasWant, hasGot bool) {
	if hasWant && hasGot {
		switch w := want.(type) {
		case map[string]any:
			if g, ok := got.(map[string]any); ok {
				keys := make([]string, 0, len(w)+len(g))
				for k := range w {
					keys = append(keys, k)
				}
				for k := range g {
					if _, ok := w[k]; !ok {
						keys = append(keys, k)
					}
				}
				sort.Strings(keys)
				for _, k := range keys {
					wv, inW := w[k]
					gv, inG := g[k]
					diffValues(b, keyPath(path, k), wv, gv, inW, inG)
				}
				return
			}
		case []any:
			if g, ok := got.([]any); ok {
				for i := 0; i < max(len(w), len(g)); i++ {
					var wv, gv any
					if i < len(w) {
						wv = w[i]
					}
					if i < len(g) {
						gv = g[i]
					}
					diffValues(b, path+"["+strconv.Itoa(i)+"]", wv, gv, i < len(w), i < len(g))
				}
				return
			}
		}
		if reflect.DeepEqual(want, got) {
			return
		}
	}
	if path == "" {
		path = "(whole document)"
	}
	fmt.Fprintf(b, "  %s:\n", path)
	fmt.Fprintf(b, "  - %s\n", jsonValue(want, hasWant))
	fmt.Fprintf(b, "  + %s\n", jsonValue(got, hasGot))
}

var plainKey = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*$`)

// keyPath appends the object key k to path: .name, or ["odd key"].
func keyPath(path, k string) string {
	if plainKey.MatchString(k) {
		if path == "" {
			return k
		}
		return path + "." + k
	}
	return path + "[" + strconv.Quote(k) + "]"
}

// jsonValue renders v as compact JSON, or (absent).
func jsonValue(v any, present bool) string {
	if !present {
		return "(absent)"
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Sprintf("%v", v)
	}
	return strings.TrimSuffix(buf.String(), "\n")
}
