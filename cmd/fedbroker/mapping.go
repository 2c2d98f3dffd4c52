package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/runtime"
	"github.com/fedbroker/fedbroker/broker/workbench"
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
		Use:   "test --config C --claims sample.json [--connector ID | --workload ID] | --golden DIR",
		Short: "Show what a connector's mapping decides for sample upstream claims",
		Long: `mapping test evaluates a connector's mapping on sample upstream claims and
prints the decision (accepted, or rejected with the admin's message), the
internal subject, the link key and the exact ID-token and access-token claims,
as JSON on stdout. It works offline: it opens no connector and reads no storage.

--claims takes a JSON file holding the upstream claims, or an object
{"connector": ID, "claims": {...}, "sources": {...}, "upstream_sub": "..."}
(with "workload": true when ID names a workload issuer). A file that names
its connector needs no --connector; a flag that names another one is an error.

The subject shown is the one the mapping computes. When the connector is in a
links.groups entry and the mapping gives a link key, the report adds "linking":
the broker then issues the subject of the first identity that signed in with
that key through one of those connectors, which only its storage knows.

Exit status: 0 accepted, 2 rejected or failed, 1 the test could not run.

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
			if claimsPath == "" {
				return errors.New("mapping test: give --claims FILE (or --golden DIR)")
			}
			if connector != "" && workloadID != "" {
				return errors.New("mapping test: give --connector or --workload, not both")
			}
			in, err := readSample(claimsPath)
			if err != nil {
				return err
			}
			if err := sampleTarget(&in, claimsPath, connector, workloadID); err != nil {
				return err
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
			if note := linkNote(cfg, in, rep); note != "" {
				fmt.Fprintln(cmd.ErrOrStderr(), "note:", note)
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

// sampleTarget settles which connector (or workload issuer) the sample in
// read from path is for: the one the file names, else the one the flags
// name. A flag naming another one than the file is an error naming both.
func sampleTarget(in *runtime.MappingInput, path, connector, workloadID string) error {
	flag, flagName, flagWorkload := "--connector", connector, false
	if workloadID != "" {
		flag, flagName, flagWorkload = "--workload", workloadID, true
	}
	fileKind := "connector"
	if in.Workload {
		fileKind = "workload issuer"
	}
	switch {
	case in.Connector == "" && flagName == "":
		return fmt.Errorf(`mapping test: %s does not say whose mapping to run: give --connector ID (or --workload ID), or write it as {"connector": ID, "claims": {...}}`, path)
	case in.Connector == "" && in.Workload && !flagWorkload:
		return fmt.Errorf("mapping test: %s is a workload sample (\"workload\": true) but %s %q names a connector: use --workload", path, flag, flagName)
	case in.Connector == "":
		in.Connector, in.Workload = flagName, flagWorkload
	case flagName != "" && (flagName != in.Connector || flagWorkload != in.Workload):
		return fmt.Errorf("mapping test: %s %q, but %s names %s %q: drop the flag or make them agree", flag, flagName, path, fileKind, in.Connector)
	}
	return nil
}

// mappingReport is what mapping test prints for one sample: the dry run's
// report, and whether its subject is the one issued.
type mappingReport struct {
	runtime.MappingReport
	// Linking is set when the connector links identities by the link key
	// the mapping gave: the subject shown is then before linking.
	Linking *linkingReport `json:"linking,omitempty"`
}

type linkingReport struct {
	// Connectors are the connectors whose identities with this link key
	// share one subject (every links.groups entry with this connector).
	Connectors []string `json:"connectors"`
	// SubjectShown is "before_linking".
	SubjectShown string `json:"subject_shown"`
	Note         string `json:"note"`
}

func evaluate(cmd *cobra.Command, cfg *config.Config, in runtime.MappingInput, explain bool) (mappingReport, error) {
	compile := runtime.CompileMapping
	if in.Workload {
		compile = runtime.CompileWorkloadMapping
	}
	m, typ, err := compile(cfg, in.Connector)
	if err != nil {
		var problems config.Errors
		if errors.As(err, &problems) {
			printProblems(cmd.ErrOrStderr(), "mapping", err)
			return mappingReport{}, exitCode(1)
		}
		return mappingReport{}, err
	}
	rep := mappingReport{MappingReport: runtime.RunMapping(cmd.Context(), m, typ, in, explain)}
	if group := linkGroup(cfg, in); rep.Decision == "accepted" && rep.LinkKey != "" && len(group) > 1 {
		rep.Linking = &linkingReport{
			Connectors:   group,
			SubjectShown: "before_linking",
			Note: fmt.Sprintf("subject is before linking: if no identity holds link key %q yet, it is the subject issued; if an identity of %s holds it, that identity's subject is issued instead; if another %s identity or a connector outside the group holds it, the sign-in is refused as a conflict. mapping test reads no storage: see fedbroker links list or GET /admin/links",
				rep.LinkKey, orList(group[1:]), in.Connector),
		}
	}
	return rep, nil
}

// linkGroup returns the connectors whose identities share subjects with
// in's connector through a link key, the connector first; none when it is
// in no links.groups entry (or is a workload issuer, which never links).
func linkGroup(cfg *config.Config, in runtime.MappingInput) []string {
	if in.Workload {
		return nil
	}
	var out []string
	for _, g := range cfg.Links.Groups {
		if !slices.Contains(g, in.Connector) {
			continue
		}
		if out == nil {
			out = []string{in.Connector}
		}
		for _, id := range g {
			if !slices.Contains(out, id) {
				out = append(out, id)
			}
		}
	}
	return out
}

// linkNote says, for a person reading stderr, when a link key links
// nothing, so that the subject shown is final.
func linkNote(cfg *config.Config, in runtime.MappingInput, rep mappingReport) string {
	switch {
	case rep.Decision != "accepted" || rep.LinkKey == "" || rep.Linking != nil:
		return ""
	case in.Workload:
		return fmt.Sprintf("workload issuers do not link identities: link key %q is not used, and the subject shown is final", rep.LinkKey)
	}
	return fmt.Sprintf("connector %q is in no links.groups entry, so link key %q links nothing: the subject shown is final", in.Connector, rep.LinkKey)
}

// orList renders ids as "a", "a or b", "a, b or c".
func orList(ids []string) string {
	if len(ids) == 1 {
		return ids[0]
	}
	return strings.Join(ids[:len(ids)-1], ", ") + " or " + ids[len(ids)-1]
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
	for _, d := range workbench.DiffJSON(w, g) {
		path := d.Path
		if path == "" {
			path = "(whole document)"
		}
		fmt.Fprintf(&b, "  %s:\n  - %s\n  + %s\n", path, d.Running, d.Draft)
	}
	return strings.TrimSuffix(b.String(), "\n")
}
