package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/fedbroker/fedbroker/demo"
)

func newDemoCmd() *cobra.Command {
	opts := demo.DefaultOptions()
	var logLevel string
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the whole story locally: broker, an OIDC and a SAML upstream IdP, a demo app and API (no internet needed)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger, err := newLogger(cmd.ErrOrStderr(), logLevel)
			if err != nil {
				return err
			}
			opts.Logger = logger
			d, err := demo.Start(cmd.Context(), opts)
			if err != nil {
				return err
			}
			defer d.Close()
			d.PrintWelcome(cmd.OutOrStdout())
			<-cmd.Context().Done()
			fmt.Fprintln(cmd.OutOrStdout(), "demo stopped")
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Host, "host", opts.Host, "loopback address to listen on")
	f.IntVar(&opts.AppPort, "app-port", opts.AppPort, "demo app port")
	f.IntVar(&opts.BrokerPort, "broker-port", opts.BrokerPort, "broker port")
	f.IntVar(&opts.ContosoPort, "contoso-port", opts.ContosoPort, "Contoso (OIDC IdP) port")
	f.IntVar(&opts.FabrikamPort, "fabrikam-port", opts.FabrikamPort, "Fabrikam (SAML IdP) port")
	f.IntVar(&opts.APIPort, "api-port", opts.APIPort, "demo API port")
	f.IntVar(&opts.AdminPort, "admin-port", opts.AdminPort, "broker admin API port")
	f.StringVar(&logLevel, "log-level", "warn", "debug, info, warn or error")
	return cmd
}
