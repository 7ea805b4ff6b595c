package main

import (
	"errors"
	"fmt"
	"io/fs"
	"math"

	"github.com/spf13/cobra"

	"github.com/groupsync/groupsync/state"
)

func newMigrateCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "migrate",
		Short: "Create or upgrade the mirror's tables in Postgres",
		Long: `migrate creates the configured schema (database.schema, default groupsync) and applies
every pending migration, each in its own transaction. Running it again is a no-op, and
several processes may run it at once: they take turns on an advisory lock.

The database comes from database.url / database.url_file or GROUPSYNC_DATABASE_URL.`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, logger, err := a.setup()
			if errors.Is(err, fs.ErrNotExist) && !cmd.Flags().Changed("config") {
				// No configuration file: migrate needs only the database, which the
				// environment may give (GROUPSYNC_DATABASE_URL).
				if _, ok := a.env.lookup.Lookup("GROUPSYNC_DATABASE_URL"); ok {
					cfg, logger, err = a.setupFromEnv()
				}
			}
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			store, err := state.Open(ctx, cfg.Database.URL.Reveal(), state.Options{
				Schema:         cfg.Database.Schema,
				MaxConns:       int32(min(cfg.Database.MaxConns, math.MaxInt32)),
				AcquireTimeout: cfg.Database.AcquireTimeout,
				Logger:         logger,
			})
			if err != nil {
				return fmt.Errorf("migrate: %w", err)
			}
			defer store.Close()
			applied, err := store.Migrate(ctx)
			if err != nil {
				return fmt.Errorf("migrate schema %s: %w", cfg.Database.Schema, err)
			}
			current, _, err := store.MigrationStatus(ctx)
			if err != nil {
				return fmt.Errorf("migrate schema %s: read status: %w", cfg.Database.Schema, err)
			}
			out := cmd.OutOrStdout()
			if len(applied) == 0 {
				fmt.Fprintf(out, "schema %s is up to date (version %d)\n", cfg.Database.Schema, current)
				return nil
			}
			logger.Info("migrations applied", "schema", cfg.Database.Schema, "versions", applied)
			fmt.Fprintf(out, "schema %s migrated to version %d (applied %v)\n", cfg.Database.Schema, current, applied)
			return nil
		},
	}
}
