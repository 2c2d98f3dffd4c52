package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/fedbroker/fedbroker/broker"
	"github.com/fedbroker/fedbroker/broker/config"
	"github.com/fedbroker/fedbroker/broker/storage"
	"github.com/fedbroker/fedbroker/broker/storage/sqlstore"
)

func newStorageCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "storage", Short: "Migrate the SQL schema, or copy state from one storage to another"}
	cmd.AddCommand(newMigrateCmd(), newCopyCmd(), newDistrustCmd())
	return cmd
}

// loadConfig loads path, printing its problems.
func loadConfig(cmd *cobra.Command, path string) (*config.Config, error) {
	cfg, err := config.Load(path)
	if err != nil {
		printProblems(cmd.ErrOrStderr(), path, err)
		return nil, exitCode(1)
	}
	return cfg, nil
}

func newMigrateCmd() *cobra.Command {
	var cfgPath string
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Apply the SQL schema migrations the configured storage (sqlite or postgres) lacks, before rolling out a new version",
		Long: "Apply the SQL schema migrations the configured storage lacks. `fedbroker serve` applies them at start too " +
			"(on PostgreSQL under an advisory lock, so replicas starting together migrate once); run this first when you " +
			"want the schema change to happen before the rollout. With --dry-run, list what would be applied and change nothing.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd, cfgPath)
			if err != nil {
				return err
			}
			st, err := openSQL(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			defer st.Close()
			pending, err := st.PendingMigrations(cmd.Context())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if len(pending) == 0 {
				fmt.Fprintf(out, "%s schema is up to date\n", st.Kind())
				return nil
			}
			for _, m := range pending {
				verb := "applying"
				if dryRun {
					verb = "would apply"
				}
				fmt.Fprintf(out, "%s %s\n", verb, m)
			}
			if dryRun {
				return nil
			}
			if err := st.Migrate(cmd.Context()); err != nil {
				return err
			}
			fmt.Fprintf(out, "%s schema is up to date (%d applied)\n", st.Kind(), len(pending))
			return nil
		},
	}
	cmd.Flags().StringVarP(&cfgPath, "config", "c", "", "configuration file (required)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "list the migrations that would be applied and change nothing")
	_ = cmd.MarkFlagRequired("config")
	return cmd
}

// openSQL opens the configured SQL store without migrating it.
func openSQL(ctx context.Context, cfg *config.Config) (*sqlstore.Store, error) {
	opts := sqlstore.Options{NoMigrate: true, Logger: slog.New(slog.DiscardHandler)}
	switch cfg.Storage.Type {
	case "sqlite":
		st, err := sqlstore.OpenSQLite(ctx, cfg.Storage.SQLite.Path, opts)
		if err != nil {
			return nil, fmt.Errorf("storage.sqlite: %w", err)
		}
		return st, nil
	case "postgres":
		st, err := sqlstore.OpenPostgres(ctx, cfg.Storage.Postgres.URL, opts)
		if err != nil {
			return nil, fmt.Errorf("storage.postgres: %w", err)
		}
		return st, nil
	default:
		return nil, fmt.Errorf("storage migrate: storage.type is %s, which has no schema; migrations are for sqlite and postgres", cfg.Storage.Type)
	}
}

func newCopyCmd() *cobra.Command {
	var from, to string
	cmd := &cobra.Command{
		Use:   "copy --from OLD.yaml --to NEW.yaml",
		Short: "Copy the signing keys, identity links, live refresh families and sessions, and revocations from one storage to another",
		Long: "Copy the state that outlives a sign-in from the storage of one configuration to the storage of another " +
			"(for example from Redis or SQLite to PostgreSQL), so that moving does not sign everyone out: the signing key set, " +
			"identity links, live refresh families (their tokens keep working), SSO sessions, revocations and the tombstones of " +
			"revoked families. Pending sign-ins and unredeemed codes are not copied. Stop the brokers on the old storage first " +
			"(or accept that what they write during the copy may be missing); records already in the new storage are left as they are, " +
			"so the copy can be run again.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			src, err := openFor(cmd, from, "--from")
			if err != nil {
				return err
			}
			defer src.Close()
			dst, err := openFor(cmd, to, "--to")
			if err != nil {
				return err
			}
			defer dst.Close()
			return copyStorage(cmd.Context(), cmd.OutOrStdout(), src, dst)
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "configuration whose storage is read (required)")
	cmd.Flags().StringVar(&to, "to", "", "configuration whose storage is written (required)")
	_ = cmd.MarkFlagRequired("from")
	_ = cmd.MarkFlagRequired("to")
	return cmd
}

// openFor opens the storage of the configuration at path (migrating a SQL
// schema, as serve would).
func openFor(cmd *cobra.Command, path, flag string) (storage.Storage, error) {
	cfg, err := loadConfig(cmd, path)
	if err != nil {
		return nil, err
	}
	if cfg.Storage.Type == "memory" {
		return nil, fmt.Errorf("storage copy %s %s: the memory store lives inside a running broker and cannot be copied", flag, path)
	}
	logger, _ := newLogger(cmd.ErrOrStderr(), "warn")
	st, err := broker.OpenStorage(cmd.Context(), cfg, logger)
	if err != nil {
		return nil, fmt.Errorf("storage copy %s %s: %w", flag, path, err)
	}
	return st, nil
}

// copyStorage copies every record src exports into dst and prints how
// many of each kind.
func copyStorage(ctx context.Context, out io.Writer, src, dst storage.Storage) error {
	exp, ok := src.(storage.Exporter)
	if !ok {
		return fmt.Errorf("storage copy: the source storage (%T) cannot export", src)
	}
	imp, ok := dst.(storage.Importer)
	if !ok {
		return fmt.Errorf("storage copy: the destination storage (%T) cannot import", dst)
	}
	var counts [7]int
	names := [7]string{"key set", "links", "refresh families", "sessions", "revocations and replay records", "tombstones", "back-channel logouts to send"}
	err := exp.Export(ctx, func(it storage.Item) error {
		switch {
		case it.Keys != nil:
			counts[0]++
		case it.Link != nil:
			counts[1]++
		case it.Family != nil:
			counts[2]++
		case it.Session != nil:
			counts[3]++
		case it.Seen != nil:
			counts[4]++
		case it.Tombstone != nil:
			counts[5]++
		case it.Delivery != nil:
			counts[6]++
		default:
			return errors.New("storage copy: the source exported an empty record")
		}
		return imp.Import(ctx, it)
	})
	for i, n := range counts {
		fmt.Fprintf(out, "%-32s %d\n", names[i], n)
	}
	if err != nil {
		return fmt.Errorf("storage copy: %w (what is listed above was copied; run the copy again to finish)", err)
	}
	fmt.Fprintln(out, "copied")
	return nil
}

func newDistrustCmd() *cobra.Command {
	var cfgPath string
	cmd := &cobra.Command{
		Use:   "distrust",
		Short: "Start a new storage epoch: refuse every refresh token, session and code from before now (after restoring a backup)",
		Long: "Start a new storage epoch. From then on every broker on this storage refuses refresh families, SSO sessions " +
			"and authorization codes created before now, and refuses access tokens issued before now at introspection, userinfo " +
			"and token exchange: everyone signs in again. Run it after restoring storage from a backup while no broker ran: " +
			"running brokers detect a rollback themselves, but nothing remembers what a restored backup lost when they were all stopped. " +
			"Signing keys are kept: tokens still verify where they are checked locally.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := openFor(cmd, cfgPath, "--config")
			if err != nil {
				return err
			}
			defer st.Close()
			es, ok := st.(storage.EpochStarter)
			if !ok {
				return fmt.Errorf("storage distrust: %s storage has no epoch", cfgPath)
			}
			e, err := es.StartEpoch(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "new storage epoch %s: state from before %s is refused\n", e.ID, e.Since.UTC().Format("2006-01-02T15:04:05.000Z"))
			return nil
		},
	}
	cmd.Flags().StringVarP(&cfgPath, "config", "c", "", "configuration file (required)")
	_ = cmd.MarkFlagRequired("config")
	return cmd
}
