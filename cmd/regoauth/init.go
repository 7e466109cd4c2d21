package main

import (
	"crypto"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/spf13/cobra"

	"github.com/regoauth/regoauth/keystore"
	"github.com/regoauth/regoauth/tokens"
)

// initCommand prepares what `serve` needs on first start and keeps what exists, so a container
// platform can run it before every start (compose's one-shot service, an init container).
func initCommand() *cobra.Command {
	var configPath, adminKeyFile string
	cmd := &cobra.Command{
		Use:   "init --config FILE [--admin-key-file FILE]",
		Short: "Create the signing key, refresh-token secrets and admin key a configuration names, unless they exist",
		Long: `Reads the server's configuration and creates whatever it names that is missing:
  - signing.key_file: a new ES256 key (mode 0600), and signing.cert_file: a self-signed
    certificate for it, the registries' auth.token.rootcertbundle;
  - each refresh_tokens.secrets entry given as {file: PATH}: 32 random bytes, hex-encoded;
  - with --admin-key-file: the admin account (role admin) in the store, and a new API key for
    it written to that file (mode 0600) unless the file already holds a working key.
Existing files are never overwritten and secrets are never printed, so it is safe to run before
every start.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if configPath == "" {
				return usageError{errors.New("--config is required")}
			}
			cfg, err := LoadConfig(configPath)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if err := initSigning(out, cfg.Signing, cfg.Issuer, time.Now()); err != nil {
				return fmt.Errorf("signing key: %w", err)
			}
			for i, s := range cfg.RefreshTokens.Secrets {
				if s.File == "" {
					continue
				}
				created, err := ensureSecret(s.File)
				if err != nil {
					return fmt.Errorf("refresh_tokens.secrets[%d]: %w", i, err)
				}
				report(out, created, "refresh-token secret", s.File)
			}
			if adminKeyFile == "" {
				return nil
			}
			store, err := openStoreDirect(cmd, cfg.Store.URL)
			if err != nil {
				return err
			}
			defer store.Close()
			if err := os.MkdirAll(filepath.Dir(adminKeyFile), 0o700); err != nil {
				return err
			}
			created, err := ensureAdminKey(cmd, store, adminKeyFile)
			if err != nil {
				return fmt.Errorf("admin key: %w", err)
			}
			report(out, created, "admin API key", adminKeyFile)
			return nil
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "the server's configuration file")
	cmd.Flags().StringVar(&adminKeyFile, "admin-key-file", "", "where the admin account's API key is kept")
	return cmd
}

func report(w io.Writer, created bool, what, path string) {
	if created {
		fmt.Fprintf(w, "created %s %s\n", what, path)
	} else {
		fmt.Fprintf(w, "kept %s %s\n", what, path)
	}
}

// initSigning creates the signing key when it is missing, and its certificate when one is
// configured and missing, then checks that the pair loads.
func initSigning(out io.Writer, cfg Signing, commonName string, now time.Time) error {
	var priv crypto.Signer
	keyCreated := false
	if _, err := os.Stat(cfg.KeyFile); errors.Is(err, fs.ErrNotExist) {
		if priv, err = tokens.GenerateKey(jose.ES256, rand.Reader); err != nil {
			return err
		}
		keyPEM, err := tokens.EncodePrivateKeyPEM(priv)
		if err != nil {
			return err
		}
		if err := writeNewFile(cfg.KeyFile, keyPEM, 0o600); err != nil {
			return err
		}
		keyCreated = true
	} else if err != nil {
		return err
	}
	report(out, keyCreated, "signing key", cfg.KeyFile)
	if cfg.CertFile != "" {
		if _, err := os.Stat(cfg.CertFile); errors.Is(err, fs.ErrNotExist) {
			if priv == nil {
				raw, err := os.ReadFile(cfg.KeyFile)
				if err != nil {
					return err
				}
				if priv, err = tokens.ParsePrivateKeyPEM(raw); err != nil {
					return fmt.Errorf("%s: %w", cfg.KeyFile, err)
				}
			}
			cert, err := tokens.SelfSignedCertificate(priv, commonName, now.Add(-time.Hour), 10*365*24*time.Hour)
			if err != nil {
				return err
			}
			if err := writeNewFile(cfg.CertFile, tokens.EncodeCertificatesPEM(cert), 0o644); err != nil {
				return err
			}
			report(out, true, "signing certificate", cfg.CertFile)
		} else if err != nil {
			return err
		} else {
			report(out, false, "signing certificate", cfg.CertFile)
		}
	}
	// Loading checks that the certificate holds the key: a mismatch would otherwise only be
	// found out by the registries, refusing every token.
	key, err := tokens.LoadKeyFiles(cfg.KeyFile, cfg.CertFile, tokens.KIDMode(cfg.KID))
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "signing kid %s\n", key.KID)
	return nil
}

// ensureSecret writes a new random secret to path unless the file exists.
func ensureSecret(path string) (bool, error) {
	if _, err := os.Stat(path); err == nil {
		return false, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return false, err
	}
	return true, ensureSecretFile(path)
}

// ensureAdminKey makes sure the admin account exists with the admin role and path holds a
// working key for it.
func ensureAdminKey(cmd *cobra.Command, store keystore.Store, path string) (bool, error) {
	a, err := store.GetAccount(cmd.Context(), "admin")
	if err == nil && !a.HasRole("admin") {
		return false, errors.New(`account "admin" exists without the admin role`)
	} else if err != nil && !errors.Is(err, keystore.ErrNotFound) {
		return false, err
	}
	before, _ := os.ReadFile(path)
	if err := bootstrapAdmin(cmd.Context(), store, path); err != nil {
		return false, err
	}
	after, err := os.ReadFile(path)
	if err != nil {
		return false, err
	}
	return string(before) != string(after), nil
}

// writeNewFile writes data to path whole or not at all (a crash leaves no half key behind), and
// fails rather than overwrite a file that appeared in the meantime.
func writeNewFile(path string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	defer os.Remove(tmp)
	return os.Link(tmp, path)
}
