package main

import (
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/spf13/cobra"
)

// newProbeCmd is a health check for images without a shell or curl
// (distroless): it GETs a URL and exits 0 only on 200.
func newProbeCmd() *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "probe [URL]",
		Short: "Health check: GET URL (default http://127.0.0.1:5556/readyz) and exit 0 only on 200",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			target := "http://127.0.0.1:5556/readyz"
			if len(args) == 1 {
				target = args[0]
			}
			client := &http.Client{Timeout: timeout}
			resp, err := client.Get(target)
			if err != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "probe: %v\n", err)
				return exitCode(1)
			}
			defer resp.Body.Close()
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			if resp.StatusCode != http.StatusOK {
				fmt.Fprintf(cmd.ErrOrStderr(), "probe: %s answered %s\n", target, resp.Status)
				return exitCode(1)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "probe: %s answered %s\n", target, resp.Status)
			return nil
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 3*time.Second, "how long to wait for the answer")
	return cmd
}
