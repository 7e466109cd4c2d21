package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/spf13/cobra"

	"github.com/regoauth/regoauth/devstack"
	"github.com/regoauth/regoauth/keystore"
	"github.com/regoauth/regoauth/tokens"
)

const devIssuer = "regoauth-dev"

func devCommand() *cobra.Command {
	var dataDir, registryAddr, tokenAddr, logLevel, policyPath string
	var withConsole bool
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a registry and the token server together, for local use",
		Long: `Starts, in one process, a distribution registry and the token server it trusts, with the
embedded store, a signing key and the registry's images all kept in the data folder. A restart on
the same folder keeps every account, key, grant and image. The admin account's API key is written
to DATA/admin.key.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDev(cmd.Context(), cmd.OutOrStdout(), dataDir, registryAddr, tokenAddr, logLevel, policyPath, withConsole)
		},
	}
	cmd.Flags().StringVar(&dataDir, "data", "regoauth-data", "folder for the store, keys and images")
	cmd.Flags().StringVar(&registryAddr, "registry-addr", "localhost:5000", "registry address; also the service name in tokens")
	cmd.Flags().StringVar(&tokenAddr, "token-addr", "localhost:5001", "token server address (the realm is http://ADDR/token)")
	cmd.Flags().StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	cmd.Flags().StringVar(&policyPath, "policy", "", "a bundle directory or tarball loaded beside the built-in library, reloaded when it changes")
	cmd.Flags().BoolVar(&withConsole, "console", true, "serve the web console at http://TOKEN-ADDR/console/")
	return cmd
}

func runDev(ctx context.Context, out io.Writer, dataDir, registryAddr, tokenAddr, logLevel, policyPath string, withConsole bool) error {
	for flag, addr := range map[string]string{"--registry-addr": registryAddr, "--token-addr": tokenAddr} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return usageError{fmt.Errorf("%s %q: want HOST:PORT, e.g. localhost:5000", flag, addr)}
		}
	}
	dir, err := filepath.Abs(dataDir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	keyPath, certPath := filepath.Join(dir, "signing-key.pem"), filepath.Join(dir, "signing-cert.pem")
	if _, err := tokens.EnsureKeyFiles(keyPath, certPath, jose.ES256, devIssuer, time.Now()); err != nil {
		return fmt.Errorf("signing key: %w", err)
	}

	refreshSecret := filepath.Join(dir, "refresh-secret")
	if err := ensureSecretFile(refreshSecret); err != nil {
		return fmt.Errorf("refresh token secret: %w", err)
	}

	cfg := defaults()
	cfg.Issuer = devIssuer
	cfg.Services = []string{registryAddr}
	cfg.Listen.Addr = tokenAddr
	cfg.Signing = Signing{KeyFile: keyPath, CertFile: certPath, KID: string(tokens.KIDThumbprint)}
	cfg.Store.URL = Secret{Value: "bolt://" + filepath.Join(dir, "store.db")}
	cfg.RefreshTokens.Secrets = []Secret{{File: refreshSecret}}
	cfg.Log = Log{Format: "text", Level: logLevel}
	cfg.Console.Enabled = withConsole
	if policyPath != "" {
		if st, err := os.Stat(policyPath); err != nil {
			return usageError{fmt.Errorf("--policy: %w", err)}
		} else if st.IsDir() {
			cfg.Policy.Dir = policyPath
		} else {
			cfg.Policy.Bundle = policyPath
		}
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	logger := newLogger(cfg.Log, os.Stderr)

	s, err := newServer(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer s.Close()
	adminKeyPath := filepath.Join(dir, "admin.key")
	if err := bootstrapAdmin(ctx, s.store, adminKeyPath); err != nil {
		return fmt.Errorf("creating the admin account: %w", err)
	}

	// The registry logs every refused request and every blob probe of a push as a warning or
	// an error; that is the protocol working, not a fault, so it speaks only under debug.
	registryLogLevel := "fatal"
	if logLevel == "debug" {
		registryLogLevel = "info"
	}
	realm := "http://" + tokenAddr + "/token"
	reg, err := devstack.NewRegistry(ctx, devstack.RegistryOptions{
		RootDir: filepath.Join(dir, "registry"), Realm: realm, Service: registryAddr,
		Issuer: devIssuer, RootCertBundle: certPath, LogLevel: registryLogLevel,
	})
	if err != nil {
		return err
	}
	regActor, err := serveActor("registry", Listener{Addr: registryAddr}, newHTTPServer(reg, logger), logger)
	if err != nil {
		return err
	}
	s.extra = append(s.extra, regActor)

	printDevHelp(out, dir, registryAddr, tokenAddr, adminKeyPath)
	if withConsole {
		fmt.Fprintf(out, "Web console: http://%s%s/ (sign in as admin with the key in %s)\n\n", tokenAddr, cfg.Console.Path, adminKeyPath)
	}
	return s.run(ctx)
}

// bootstrapAdmin makes sure the admin account exists and that keyPath holds a working key for
// it, creating either when missing.
func bootstrapAdmin(ctx context.Context, store keystore.Store, keyPath string) error {
	err := store.CreateAccount(ctx, keystore.Account{Name: "admin", Roles: []string{"admin"}, Created: time.Now().UTC()})
	if err != nil && !errors.Is(err, keystore.ErrExists) {
		return err
	}
	if raw, err := os.ReadFile(keyPath); err == nil {
		if _, err := keystore.Authenticate(ctx, store, "admin", string(trimNewline(raw)), time.Now()); err == nil {
			return nil
		}
	}
	plain, id, hash, err := keystore.NewAPIKey(rand.Reader)
	if err != nil {
		return err
	}
	k := keystore.Key{ID: id, Account: "admin", Name: "dev bootstrap", Hash: hash, Created: time.Now().UTC().Truncate(time.Second)}
	if err := store.CreateKey(ctx, k); err != nil {
		return err
	}
	tmp := keyPath + ".tmp"
	if err := os.WriteFile(tmp, []byte(plain+"\n"), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, keyPath)
}

// ensureSecretFile writes 32 random bytes, hex-encoded, to path unless it exists.
func ensureSecretFile(path string) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	b := make([]byte, 32)
	if _, err := io.ReadFull(rand.Reader, b); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(hex.EncodeToString(b)+"\n"), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func trimNewline(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

func printDevHelp(out io.Writer, dir, registryAddr, tokenAddr, adminKeyPath string) {
	fmt.Fprintf(out, `
regoauth dev is running (Ctrl-C stops it).
  registry      http://%[2]s   (service %[2]q)
  token server  http://%[3]s/token
  data          %[1]s
  admin key     %[4]s

Log in, push and pull as admin (docker, crane):
  docker login %[2]s -u admin --password-stdin < %[4]s
  docker tag IMAGE %[2]s/hello && docker push %[2]s/hello && docker pull %[2]s/hello
  crane auth login %[2]s -u admin -p "$(cat %[4]s)"
  crane copy SOURCE %[2]s/hello && crane pull %[2]s/hello hello.tar

Manage accounts, keys and grants:
  export REGOAUTH_SERVER=http://%[3]s REGOAUTH_KEY_FILE=%[4]s
  regoauth accounts create user1
  regoauth keys create --account user1
  regoauth grants add --account user1 --repo image --actions pull,push

`, dir, registryAddr, tokenAddr, adminKeyPath)
}
