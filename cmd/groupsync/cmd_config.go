package main

import (
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/spf13/cobra"

	"github.com/groupsync/groupsync/config"
	"github.com/groupsync/groupsync/connectors"
	"github.com/groupsync/groupsync/connectors/registry"
)

func newConfigCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Check or print the configuration",
		Long: `config checks the configuration file (--config, default groupsync.yaml) with the
GROUPSYNC_* environment applied, or prints the effective result.`,
		Args: cobra.ArbitraryArgs,
		RunE: groupCommand,
	}
	cmd.AddCommand(
		&cobra.Command{
			Use:   "validate",
			Short: "Check the configuration and list every problem",
			Long: `validate reads the configuration with the environment applied and prints "ok", or every
problem with its key path (one per line) and exits 1. Secret files (*_file) are read, so
it also catches a missing or unreadable secret.`,
			Args: usageArgs(cobra.NoArgs),
			RunE: func(cmd *cobra.Command, _ []string) error {
				cfg, err := a.loadConfig()
				var ve *config.ValidationError
				if errors.As(err, &ve) {
					fmt.Fprintln(cmd.OutOrStdout(), ve.Error())
					return &exitError{code: exitFailure}
				}
				if err != nil {
					return err
				}
				// Each connector checks its own options and credentials when it opens
				// (no request is sent), so validate catches what only the kind knows.
				bad := 0
				for _, name := range slices.Sorted(maps.Keys(cfg.Systems)) {
					if _, err := registry.Open(cfg.SystemConfig(name), connectors.Deps{}); err != nil {
						fmt.Fprintf(cmd.OutOrStdout(), "systems.%s: %v\n", name, err)
						bad++
					}
				}
				if bad > 0 {
					return &exitError{code: exitFailure}
				}
				// Unread variables are warnings, not problems: the file is valid, but what the
				// operator meant to set may not be what groupsync uses.
				for _, w := range config.UnknownEnv(a.env.environ, cfg) {
					fmt.Fprintln(cmd.ErrOrStderr(), "warning: "+w)
				}
				fmt.Fprintln(cmd.OutOrStdout(), "ok")
				return nil
			},
		},
		&cobra.Command{
			Use:   "show",
			Short: "Print the effective configuration with secrets redacted",
			Long: `show prints the configuration as groupsync uses it: the file with the environment and
the defaults applied. Every secret, the database URL included, prints as [REDACTED].`,
			Args: usageArgs(cobra.NoArgs),
			RunE: func(cmd *cobra.Command, _ []string) error {
				cfg, err := a.loadConfig()
				if err != nil {
					return err
				}
				out, err := cfg.Redacted()
				if err != nil {
					return err
				}
				_, err = cmd.OutOrStdout().Write(out)
				return err
			},
		},
	)
	return cmd
}
