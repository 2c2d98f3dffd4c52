package main

import (
	"bufio"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/fedbroker/fedbroker/broker/config"
)

func newHashSecretCmd() *cobra.Command {
	var generate bool
	cmd := &cobra.Command{
		Use:   "hash-secret",
		Short: "Hash a client secret for clients[].secret_hash (reads the secret from stdin, or --generate a new one)",
		Long: `hash-secret prints the secret_hash for a client secret.

With --generate it creates a new 256-bit secret, prints it once, and prints
its hash: generated secrets use a fast salted SHA-256 (brute force is
hopeless at that entropy), so checking them costs microseconds. A secret read
from stdin that is shorter than 32 characters is hashed with bcrypt instead.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			var secret string
			if generate {
				secret = config.GenerateSecret()
				fmt.Fprintf(out, "secret:      %s\n", secret)
			} else {
				line, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
				if err != nil && line == "" {
					return errors.New("hash-secret: give the secret on stdin, or use --generate")
				}
				secret = strings.TrimRight(line, "\r\n")
				if secret == "" {
					return errors.New("hash-secret: the secret is empty")
				}
			}
			hash, err := config.HashSecret(secret)
			if err != nil {
				return err
			}
			if generate {
				fmt.Fprintf(out, "secret_hash: %s\n", hash)
			} else {
				fmt.Fprintln(out, hash)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&generate, "generate", false, "generate a new random secret and print it with its hash")
	return cmd
}
