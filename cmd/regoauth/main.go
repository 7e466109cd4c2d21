// Command regoauth is the token server for private container registries: `serve` runs it from a
// config file, `dev` runs an all-in-one local stack, and the other commands manage accounts,
// API keys, grants and repositories through the admin API.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
)

// usageError marks a mistake in how a command was called (exit status 2).
type usageError struct{ error }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := rootCommand()
	err := root.ExecuteContext(ctx)
	if err == nil {
		return
	}
	// One line, never a stack or the usage text.
	fmt.Fprintln(os.Stderr, "regoauth: "+strings.ReplaceAll(err.Error(), "\n", "; "))
	var ue usageError
	if errors.As(err, &ue) || isCobraUsage(err) {
		os.Exit(2)
	}
	os.Exit(1)
}

func isCobraUsage(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand flag", "flag needs an argument", "invalid argument", "accepts ", "requires at least", "required flag"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}

func rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "regoauth",
		Short:         "Token server for private container registries, with Rego policies",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
	}
	root.AddCommand(serveCommand(), devCommand(), bootstrapCommand(), signingCommand(), exportCommand(), importCommand())
	root.AddCommand(initCommand(), healthcheckCommand())
	client := &clientFlags{}
	root.AddCommand(accountsCommand(client), keysCommand(client), grantsCommand(client), reposCommand(client), whoamiCommand(client))
	root.AddCommand(policyCommand(client))
	return root
}

func serveCommand() *cobra.Command {
	var configPath string
	var checkOnly bool
	cmd := &cobra.Command{
		Use:   "serve --config FILE",
		Short: "Run the token server from a configuration file",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if configPath == "" {
				return usageError{errors.New("--config is required")}
			}
			cfg, err := LoadConfig(configPath)
			if err != nil {
				return err
			}
			logger := newLogger(cfg.Log, os.Stderr)
			s, err := newServer(cmd.Context(), cfg, logger)
			if err != nil {
				return err
			}
			defer s.Close()
			if checkOnly {
				// Serving tolerates a store that is down at start (not ready until it answers);
				// a check is about whether everything would work now.
				if p, ok := s.store.(interface{ Ping(context.Context) error }); ok {
					ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Second)
					defer cancel()
					if err := p.Ping(ctx); err != nil {
						return fmt.Errorf("the store does not answer: %w", err)
					}
				}
				fmt.Fprintln(cmd.OutOrStdout(), "configuration OK")
				return nil
			}
			return s.run(cmd.Context())
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "configuration file (YAML)")
	cmd.Flags().BoolVar(&checkOnly, "check-config", false, "load the configuration, key, policy and store, then exit")
	return cmd
}
