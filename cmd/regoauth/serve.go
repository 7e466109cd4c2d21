package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/regoauth/regoauth/server"
)

// configFlag is the --config flag of the commands that read the server's configuration file.
type configFlag struct{ path string }

func (f *configFlag) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.path, "config", "", "the server's configuration file (YAML)")
}

// load reads and validates the configuration file.
func (f *configFlag) load() (server.Config, error) {
	if f.path == "" {
		return server.Config{}, usageError{errors.New("--config is required")}
	}
	return server.LoadConfig(f.path)
}

// reloadOn reloads the server's configuration at every signal on sig. A refused reload is
// logged and counted by the server, which keeps serving the configuration it has.
func reloadOn(sig <-chan os.Signal, s *server.Server) server.Actor {
	return func(ctx context.Context) error {
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-sig:
				s.Reload("SIGHUP")
			}
		}
	}
}

func serveCommand() *cobra.Command {
	var config configFlag
	var checkOnly bool
	cmd := &cobra.Command{
		Use:   "serve --config FILE",
		Short: "Run the token server from a configuration file",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// Before anything slow, so that a SIGHUP arriving during the start waits for the
			// server instead of ending the process (its default action).
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			cfg, err := config.load()
			if err != nil {
				return err
			}
			s, err := server.New(cmd.Context(), cfg, server.Options{
				Logger: server.NewLogger(cfg.Log, os.Stderr), Version: version, ConfigFile: config.path,
			})
			if err != nil {
				return err
			}
			defer s.Close()
			if checkOnly {
				if err := s.Check(cmd.Context()); err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), "configuration OK")
				return nil
			}
			return s.Run(cmd.Context(), reloadOn(hup, s))
		},
	}
	config.register(cmd)
	cmd.Flags().BoolVar(&checkOnly, "check-config", false, "load the configuration, key, policy and store, then exit")
	return cmd
}
