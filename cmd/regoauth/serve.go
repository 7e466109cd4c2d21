package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/regoauth/regoauth/server"
)

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
			cfg, err := server.LoadConfig(configPath)
			if err != nil {
				return err
			}
			s, err := server.New(cmd.Context(), cfg, server.Options{Logger: server.NewLogger(cfg.Log, os.Stderr), Version: version})
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
			return s.Run(cmd.Context())
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "configuration file (YAML)")
	cmd.Flags().BoolVar(&checkOnly, "check-config", false, "load the configuration, key, policy and store, then exit")
	return cmd
}
