package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/regoauth/regoauth/internal/secretfile"
	"github.com/regoauth/regoauth/keystore"
	"github.com/regoauth/regoauth/server"
)

// storeFlag is the --store flag of export and import: a store URL, by default from
// $REGOAUTH_STORE_URL so that a password need not appear on a command line.
type storeFlag struct{ url string }

func (f *storeFlag) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.url, "store", "", "store URL: bolt:///path/store.db, redis://…, redis+sentinel://…, redis+cluster://… (default $REGOAUTH_STORE_URL)")
}

// open opens the store directly, without a server and without a cache. A bolt file must not be
// in use by a running server.
func (f *storeFlag) open(cmd *cobra.Command) (keystore.Store, error) {
	u := firstNonEmpty(f.url, os.Getenv("REGOAUTH_STORE_URL"))
	if u == "" {
		return nil, usageError{errors.New("--store URL is required (or set REGOAUTH_STORE_URL)")}
	}
	if _, _, err := server.ParseStoreURL(u); err != nil {
		return nil, usageError{err}
	}
	return openStoreDirect(cmd, server.Secret{Value: u})
}

// openStoreDirect opens a store for a one-shot command (export, import, bootstrap): no cache,
// no metrics, only errors logged.
func openStoreDirect(cmd *cobra.Command, url server.Secret) (keystore.Store, error) {
	logger := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelError}))
	return server.OpenStore(cmd.Context(), server.StoreConfig{URL: url}, logger, prometheus.NewRegistry())
}

func exportCommand() *cobra.Command {
	var store storeFlag
	var output string
	cmd := &cobra.Command{
		Use:   "export --store URL [--output FILE]",
		Short: "Write every account, key hash, grant and reservation of a store as JSON lines",
		Long: `Reads the store directly (not through a server) and writes a header line, then every account,
API key (with its hash, expiry, revoked flag, last use and restrictions), grant and repository
reservation, one JSON object per line, sorted. Secrets are never in a store, so never in an
export; key hashes are, so keep the file private (--output writes it with mode 0600).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := store.open(cmd)
			if err != nil {
				return err
			}
			defer s.Close()
			if output == "" || output == "-" {
				c, err := keystore.Export(cmd.Context(), s, cmd.OutOrStdout())
				if err == nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "exported %s\n", c)
				}
				return err
			}
			c, err := exportToFile(cmd, s, output)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "exported %s to %s\n", c, output)
			return nil
		},
	}
	store.register(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "", "file to write (default: standard output)")
	return cmd
}

// exportToFile writes the export through secretfile, so a failed export never leaves a
// truncated file where a good one was, and the file is readable by its owner only.
func exportToFile(cmd *cobra.Command, s keystore.Store, path string) (keystore.Counts, error) {
	var c keystore.Counts
	err := secretfile.WriteFrom(path, 0o600, func(w io.Writer) error {
		var err error
		c, err = keystore.Export(cmd.Context(), s, w)
		return err
	})
	return c, err
}

func importCommand() *cobra.Command {
	var store storeFlag
	var workers int
	cmd := &cobra.Command{
		Use:   "import --store URL [FILE]",
		Short: "Load an export (JSON lines) into a store",
		Long: `Reads an export made by 'regoauth export' (from FILE, or standard input) and writes it into the
store directly. The whole input is checked first — syntax, every record, duplicates, accounts
that keys and reservations refer to, and conflicts with records the store already holds — so bad
input writes nothing. Records the store already holds identically are skipped, and counted apart
in the summary: if an import stops half way because the store went away, run it again to finish
it.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var in io.Reader = cmd.InOrStdin()
			if len(args) == 1 && args[0] != "-" {
				f, err := os.Open(args[0])
				if err != nil {
					return err
				}
				defer f.Close()
				in = f
			}
			s, err := store.open(cmd)
			if err != nil {
				return err
			}
			defer s.Close()
			c, err := keystore.Import(cmd.Context(), s, in, workers)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "imported %s\n", c)
			return nil
		},
	}
	store.register(cmd)
	cmd.Flags().IntVar(&workers, "workers", 16, "records written at once")
	return cmd
}
