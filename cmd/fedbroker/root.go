package main

import (
	"errors"
	"fmt"
	"io"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

// exitCode is an error that only carries an exit status; the command has
// already printed what went wrong.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

func asExit(err error, target *exitCode) bool { return errors.As(err, target) }

func newRootCmd(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "fedbroker",
		Short:         "Identity federation broker: one internal OpenID Connect issuer in front of many upstream identity providers",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(
		newServeCmd(),
		newCheckCmd(),
		newHashSecretCmd(),
		newVersionCmd(),
		newDemoCmd(),
		newMappingCmd(),
		newLinksCmd(),
		newProbeCmd(),
		newStorageCmd(),
		newTokenCmd(),
	)
	return root
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := version
			if v == "" {
				if bi, ok := debug.ReadBuildInfo(); ok {
					v = bi.Main.Version
				}
			}
			if v == "" || v == "(devel)" {
				v = "dev"
			}
			fmt.Fprintln(cmd.OutOrStdout(), "fedbroker", v)
			return nil
		},
	}
}
