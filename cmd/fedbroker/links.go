package main

import (
	"errors"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/fedbroker/fedbroker/broker"
	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/storage"
)

func newLinksCmd() *cobra.Command {
	var cfgPath string
	cmd := &cobra.Command{Use: "links", Short: "List and remove identity links in the configured storage"}
	cmd.PersistentFlags().StringVarP(&cfgPath, "config", "c", "", "configuration file (required)")
	_ = cmd.MarkPersistentFlagRequired("config")
	open := func(cmd *cobra.Command) (storage.Storage, error) {
		cfg, err := config.Load(cfgPath)
		if err != nil {
			printProblems(cmd.ErrOrStderr(), cfgPath, err)
			return nil, exitCode(1)
		}
		if cfg.Storage.Type == "memory" {
			return nil, errors.New("links: the memory store lives inside the running broker; use the admin API (GET /admin/links)")
		}
		logger, _ := newLogger(cmd.ErrOrStderr(), "warn")
		return broker.OpenStorage(cmd.Context(), cfg, logger)
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List identity links",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := open(cmd)
			if err != nil {
				return err
			}
			defer st.Close()
			links, err := st.ListLinks(cmd.Context())
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
			fmt.Fprintln(w, "KEY\tSUBJECT\tCONNECTOR\tUPSTREAM SUBJECT\tCREATED")
			for _, l := range links {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", l.Key, l.Subject, l.ConnectorID, l.UpstreamSubject, l.Created.UTC().Format("2006-01-02T15:04:05Z"))
			}
			return w.Flush()
		},
	}
	unlink := &cobra.Command{
		Use:   "unlink KEY",
		Short: "Remove the link with this key; the next sign-in with it starts a new one",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := open(cmd)
			if err != nil {
				return err
			}
			defer st.Close()
			if err := st.DeleteLink(cmd.Context(), args[0]); err != nil {
				if errors.Is(err, storage.ErrNotFound) {
					return fmt.Errorf("links: no link with key %q", args[0])
				}
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "removed link %q\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(list, unlink)
	return cmd
}
