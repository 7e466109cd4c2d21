package main

import (
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/regoauth/regoauth/admin"
	"github.com/regoauth/regoauth/keystore"
)

func bootstrapCommand() *cobra.Command {
	var config configFlag
	var account string
	cmd := &cobra.Command{
		Use:   "bootstrap --config FILE [--account admin]",
		Short: "Create the first admin account and print an API key for it",
		Long: `Opens the configured store directly (not through the admin API), creates the account with the
admin role if it does not exist, and prints a new API key for it: the one way in on a fresh store.
With a bolt store the server must be stopped (the file is locked while it runs).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := keystore.ValidateName("account", account); err != nil {
				return usageError{err}
			}
			cfg, err := config.load()
			if err != nil {
				return err
			}
			store, err := openStoreDirect(cmd, cfg.Store.URL)
			if err != nil {
				return err
			}
			defer store.Close()
			key, err := admin.EnsureAdmin(cmd.Context(), store, account, "bootstrap", "", time.Now(), rand.Reader)
			if errors.Is(err, admin.ErrNotAdmin) {
				return fmt.Errorf("%w; choose another --account", err)
			}
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), key)
			return nil
		},
	}
	config.register(cmd)
	cmd.Flags().StringVar(&account, "account", "admin", "name of the admin account")
	return cmd
}
