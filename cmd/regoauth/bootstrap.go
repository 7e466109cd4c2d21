package main

import (
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/regoauth/regoauth/keystore"
)

func bootstrapCommand() *cobra.Command {
	var configPath, account string
	cmd := &cobra.Command{
		Use:   "bootstrap --config FILE [--account admin]",
		Short: "Create the first admin account and print an API key for it",
		Long: `Opens the configured store directly (not through the admin API), creates the account with the
admin role if it does not exist, and prints a new API key for it: the one way in on a fresh store.
With a bolt store the server must be stopped (the file is locked while it runs).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if configPath == "" {
				return usageError{errors.New("--config is required")}
			}
			if err := keystore.ValidateName("account", account); err != nil {
				return usageError{err}
			}
			cfg, err := LoadConfig(configPath)
			if err != nil {
				return err
			}
			store, err := openStoreDirect(cmd, cfg.Store.URL)
			if err != nil {
				return err
			}
			defer store.Close()
			ctx := cmd.Context()
			now := time.Now().UTC().Truncate(time.Second)
			err = store.CreateAccount(ctx, keystore.Account{Name: account, Roles: []string{"admin"}, Created: now})
			if errors.Is(err, keystore.ErrExists) {
				a, getErr := store.GetAccount(ctx, account)
				if getErr != nil {
					return getErr
				}
				if !a.HasRole("admin") {
					return fmt.Errorf("account %q exists without the admin role; choose another --account", account)
				}
			} else if err != nil {
				return err
			}
			plain, id, hash, err := keystore.NewAPIKey(rand.Reader)
			if err != nil {
				return err
			}
			if err := store.CreateKey(ctx, keystore.Key{ID: id, Account: account, Name: "bootstrap", Hash: hash, Created: now}); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), plain)
			return nil
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "the server's configuration file")
	cmd.Flags().StringVar(&account, "account", "admin", "name of the admin account")
	return cmd
}
