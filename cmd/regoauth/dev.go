package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/spf13/cobra"

	"github.com/regoauth/regoauth/admin"
	"github.com/regoauth/regoauth/devstack"
	"github.com/regoauth/regoauth/internal/secretfile"
	"github.com/regoauth/regoauth/server"
	"github.com/regoauth/regoauth/tokens"
)

const devIssuer = "regoauth-dev"

// devOptions are the flags of `regoauth dev`.
type devOptions struct {
	dataDir, registryAddr, tokenAddr, logLevel, policyPath string
	console                                                bool
}

func devCommand() *cobra.Command {
	var o devOptions
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a registry and the token server together, for local use",
		Long: `Starts, in one process, a distribution registry and the token server it trusts, with the
embedded store, a signing key and the registry's images all kept in the data folder. A restart on
the same folder keeps every account, key, grant and image. The admin account's API key is written
to DATA/admin.key.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDev(cmd.Context(), cmd.OutOrStdout(), o)
		},
	}
	cmd.Flags().StringVar(&o.dataDir, "data", "regoauth-data", "folder for the store, keys and images")
	cmd.Flags().StringVar(&o.registryAddr, "registry-addr", "localhost:5000", "registry address; also the service name in tokens")
	cmd.Flags().StringVar(&o.tokenAddr, "token-addr", "localhost:5001", "token server address (the realm is http://ADDR/token)")
	cmd.Flags().StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	cmd.Flags().StringVar(&o.policyPath, "policy", "", "a bundle directory or tarball loaded beside the built-in library, reloaded when it changes")
	cmd.Flags().BoolVar(&o.console, "console", true, "serve the web console at http://TOKEN-ADDR/console/")
	return cmd
}

// devConfig is the configuration of `regoauth dev`: the server's defaults, the addresses of the
// flags, and the store, keys and secrets of the data folder dir.
func devConfig(o devOptions, dir string) (server.Config, error) {
	for flag, addr := range map[string]string{"--registry-addr": o.registryAddr, "--token-addr": o.tokenAddr} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return server.Config{}, usageError{fmt.Errorf("%s %q: want HOST:PORT, e.g. localhost:5000", flag, addr)}
		}
	}
	cfg := server.Defaults()
	cfg.Issuer = devIssuer
	cfg.Services = []string{o.registryAddr}
	cfg.Listen.Addr = o.tokenAddr
	cfg.Signing = server.Signing{KeyFile: filepath.Join(dir, "signing-key.pem"), CertFile: filepath.Join(dir, "signing-cert.pem"), KID: string(tokens.KIDThumbprint)}
	cfg.Store.URL = server.Secret{Value: "bolt://" + filepath.Join(dir, "store.db")}
	cfg.RefreshTokens.Secrets = []server.Secret{{File: filepath.Join(dir, "refresh-secret")}}
	cfg.Log = server.Log{Format: "text", Level: o.logLevel}
	cfg.Console.Enabled = o.console
	if o.policyPath != "" {
		st, err := os.Stat(o.policyPath)
		switch {
		case err != nil:
			return server.Config{}, usageError{fmt.Errorf("--policy: %w", err)}
		case st.IsDir():
			cfg.Policy.Dir = o.policyPath
		default:
			cfg.Policy.Bundle = o.policyPath
		}
	}
	return cfg, cfg.Validate()
}

func runDev(ctx context.Context, out io.Writer, o devOptions) error {
	dir, err := filepath.Abs(o.dataDir)
	if err != nil {
		return err
	}
	cfg, err := devConfig(o, dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if _, err := secretfile.EnsureSigningKey(cfg.Signing.KeyFile, cfg.Signing.CertFile, jose.ES256, devIssuer, time.Now()); err != nil {
		return fmt.Errorf("signing key: %w", err)
	}
	if err := secretfile.EnsureSecret(cfg.RefreshTokens.Secrets[0].File, rand.Reader); err != nil {
		return fmt.Errorf("refresh token secret: %w", err)
	}
	logger := server.NewLogger(cfg.Log, os.Stderr)
	s, err := server.New(ctx, cfg, server.Options{Logger: logger, Version: version})
	if err != nil {
		return err
	}
	defer s.Close()

	// The admin key of the data folder is kept while it works, replaced when it does not.
	adminKeyPath := filepath.Join(dir, "admin.key")
	kept, _ := os.ReadFile(adminKeyPath)
	key, err := admin.EnsureAdmin(ctx, s.Store(), "admin", "dev bootstrap", string(kept), time.Now(), rand.Reader)
	if err == nil && key != strings.TrimSpace(string(kept)) {
		err = secretfile.Write(adminKeyPath, []byte(key+"\n"), 0o600)
	}
	if err != nil {
		return fmt.Errorf("creating the admin account: %w", err)
	}

	// The registry logs every refused request and every blob probe of a push as a warning or
	// an error; that is the protocol working, not a fault, so it speaks only under debug.
	registryLogLevel := "fatal"
	if o.logLevel == "debug" {
		registryLogLevel = "info"
	}
	reg, err := devstack.NewRegistry(ctx, devstack.RegistryOptions{
		RootDir: filepath.Join(dir, "registry"), Realm: "http://" + o.tokenAddr + "/token", Service: o.registryAddr,
		Issuer: devIssuer, RootCertBundle: cfg.Signing.CertFile, LogLevel: registryLogLevel,
	})
	if err != nil {
		return err
	}
	registry, err := server.Listen("registry", server.Listener{Addr: o.registryAddr}, reg, logger)
	if err != nil {
		return err
	}
	printDevHelp(out, dir, o.registryAddr, o.tokenAddr, adminKeyPath)
	if cfg.Console.Enabled {
		fmt.Fprintf(out, "Web console: http://%s%s/ (sign in as admin with the key in %s)\n\n", o.tokenAddr, cfg.Console.Path, adminKeyPath)
	}
	return s.Run(ctx, registry)
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
