package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/fedbroker/fedbroker/broker"
	"github.com/fedbroker/fedbroker/broker/config"
)

func newCheckCmd() *cobra.Command {
	var cfgPath string
	var offline bool
	cmd := &cobra.Command{
		Use:   "check [CONFIG]",
		Short: "Load, validate and compile a configuration; print every problem with its YAML path",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				cfgPath = args[0]
			}
			if cfgPath == "" {
				return errors.New("check: give the configuration file as an argument or with --config")
			}
			out, errOut := cmd.OutOrStdout(), cmd.ErrOrStderr()
			cfg, err := checkConfig(cmd.Context(), cfgPath, offline)
			if err != nil {
				printProblems(errOut, cfgPath, err)
				return exitCode(1)
			}
			fmt.Fprintf(out, "%s: OK\n", cfgPath)
			fmt.Fprintf(out, "  issuer:     %s\n", cfg.Issuer)
			fmt.Fprintf(out, "  storage:    %s\n", cfg.Storage.Type)
			fmt.Fprintf(out, "  signing:    %s\n", cfg.Signing.Algorithm)
			fmt.Fprintf(out, "  connectors: %d\n", len(cfg.Connectors))
			for _, c := range cfg.Connectors {
				fmt.Fprintf(out, "    - %s (%s)\n", c.ID, c.Type)
			}
			fmt.Fprintf(out, "  mappings:   %d\n", len(cfg.Mappings))
			fmt.Fprintf(out, "  clients:    %d\n", len(cfg.Clients))
			for _, c := range cfg.Clients {
				kind := "confidential"
				if c.Public {
					kind = "public"
				}
				fmt.Fprintf(out, "    - %s (%s)\n", c.ID, kind)
			}
			for _, n := range cfg.Notes() {
				fmt.Fprintf(out, "  note: %s: %s\n", n.Path, n.Message)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&cfgPath, "config", "c", "", "path to the YAML configuration")
	cmd.Flags().BoolVar(&offline, "offline", false, "validate connectors without contacting upstreams (no discovery)")
	return cmd
}

// printProblems prints every configuration problem, one per line, or the
// error as is.
func printProblems(w io.Writer, path string, err error) {
	var problems config.Errors
	if errors.As(err, &problems) {
		fmt.Fprintf(w, "%s: %d problem(s):\n", path, len(problems))
		for _, p := range problems {
			fmt.Fprintf(w, "  %s: %s\n", p.Path, p.Message)
		}
		return
	}
	fmt.Fprintf(w, "%s: %v\n", path, err)
}

// checkConfig reports every problem of the file at path in one pass: the
// file's own (config.Inspect), then what compiling it finds (connector and
// workload blocks, mappings, client keys), leaving out a problem at or
// below a path already reported. A file with problems is compiled offline:
// nothing is fetched for a configuration that cannot be served anyway.
func checkConfig(ctx context.Context, path string, offline bool) (*config.Config, error) {
	cfg, err := config.Inspect(path)
	var ps config.Errors
	if err != nil && !errors.As(err, &ps) || cfg == nil {
		return nil, err
	}
	cerr := broker.Check(ctx, cfg, broker.Options{}, offline || len(ps) > 0)
	var more config.Errors
	switch {
	case cerr == nil:
	case errors.As(cerr, &more):
		ps = ps.Merge(more)
	default:
		ps = append(ps, config.Problem{Message: cerr.Error()})
	}
	if len(ps) > 0 {
		return nil, ps
	}
	return cfg, nil
}
