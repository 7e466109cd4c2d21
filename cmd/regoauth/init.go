package main

import (
	"context"
	"crypto"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/spf13/cobra"

	"github.com/regoauth/regoauth/admin"
	"github.com/regoauth/regoauth/internal/secretfile"
	"github.com/regoauth/regoauth/server"
	"github.com/regoauth/regoauth/tokens"
)

// initCommand prepares what `serve` needs on first start and keeps what exists, so a container
// platform can run it before every start (compose's one-shot service, an init container).
func initCommand() *cobra.Command {
	var config configFlag
	var adminKeyFile string
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
			cfg, err := config.load()
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
			created, err := ensureAdminKey(cmd.Context(), store, adminKeyFile)
			if err != nil {
				return fmt.Errorf("admin key: %w", err)
			}
			report(out, created, "admin API key", adminKeyFile)
			return nil
		},
	}
	config.register(cmd)
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
func initSigning(out io.Writer, cfg server.Signing, commonName string, now time.Time) error {
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
		if err := createFile(cfg.KeyFile, keyPEM, 0o600); err != nil {
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
			if err := createFile(cfg.CertFile, tokens.EncodeCertificatesPEM(cert), 0o644); err != nil {
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

// createFile writes a new file whole, in a folder it creates, and never replaces one.
func createFile(path string, data []byte, perm fs.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return secretfile.Create(path, data, perm)
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
	return true, secretfile.EnsureSecret(path, rand.Reader)
}

// ensureAdminKey makes sure the admin account exists with the admin role and path holds a
// working key for it.
func ensureAdminKey(ctx context.Context, store admin.Store, path string) (bool, error) {
	kept, _ := os.ReadFile(path)
	key, err := admin.EnsureAdmin(ctx, store, "admin", "init", string(kept), time.Now(), rand.Reader)
	if err != nil || key == strings.TrimSpace(string(kept)) {
		return false, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return false, err
	}
	return true, secretfile.Write(path, []byte(key+"\n"), 0o600)
}
