package main

import (
	"bufio"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/crypto/bcrypt"

	"github.com/fedbroker/fedbroker/broker/config"
)

// passwordBcryptCost is the bcrypt cost of --password hashes, the same as
// for short client secrets.
const passwordBcryptCost = config.SecretBcryptCost

func newHashSecretCmd() *cobra.Command {
	var generate, password bool
	cmd := &cobra.Command{
		Use:   "hash-secret",
		Short: "Hash a client secret for clients[].secret_hash, or with --password a local user's password (reads stdin, or --generate a new secret)",
		Long: `hash-secret prints the secret_hash for a client secret.

With --generate it creates a new 256-bit secret, prints it once, and prints
its hash: generated secrets use a fast salted SHA-256 (brute force is
hopeless at that entropy), so checking them costs microseconds. A secret read
from stdin that is shorter than 32 characters is hashed with bcrypt instead.

With --password it reads a local user's password from stdin (the first
line, without its line ending) and prints a bcrypt hash (cost 12) for
connectors[].config.users[].password_hash, whatever the password's length.
bcrypt reads at most 72 bytes, so a longer password is refused.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			if generate && password {
				return errors.New("hash-secret: --generate makes client secrets; a password is read from stdin with --password")
			}
			var secret string
			if generate {
				secret = config.GenerateSecret()
				fmt.Fprintf(out, "secret:      %s\n", secret)
			} else {
				what := "secret"
				if password {
					what = "password"
				}
				line, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
				if err != nil && line == "" {
					if password {
						return errors.New("hash-secret: give the password on stdin")
					}
					return errors.New("hash-secret: give the secret on stdin, or use --generate")
				}
				secret = strings.TrimRight(line, "\r\n")
				if secret == "" {
					return fmt.Errorf("hash-secret: the %s is empty", what)
				}
			}
			if password {
				if len(secret) > 72 {
					return fmt.Errorf("hash-secret: the password is %d bytes; bcrypt reads at most 72", len(secret))
				}
				h, err := bcrypt.GenerateFromPassword([]byte(secret), passwordBcryptCost)
				if err != nil {
					return fmt.Errorf("hash-secret: %w", err)
				}
				fmt.Fprintln(out, string(h))
				return nil
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
	cmd.Flags().BoolVar(&password, "password", false, "hash a local user's password from stdin with bcrypt (for users[].password_hash)")
	return cmd
}
