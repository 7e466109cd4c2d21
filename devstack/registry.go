// Package devstack is the registry half of `regoauth dev`: a distribution v3 registry embedded in
// the process, storing on the local filesystem and trusting only tokens from this token server.
// It is the same registry code a production fleet runs, configured the way PROTOCOL.md asks. It
// knows nothing of the token server but the realm, service, issuer and certificate it is given.
package devstack

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"
	"github.com/sirupsen/logrus"

	// The filesystem storage driver and the token access controller register themselves.
	_ "github.com/distribution/distribution/v3/registry/auth/token"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
)

// RegistryOptions configure the embedded registry.
type RegistryOptions struct {
	// RootDir holds the registry's blobs and manifests.
	RootDir string
	// Realm is the token endpoint clients are sent to, e.g. http://localhost:5001/token.
	Realm string
	// Service is the registry's name in tokens (their audience).
	Service string
	Issuer  string
	// RootCertBundle is the PEM file of the certificates the registry trusts for token signing.
	RootCertBundle string
	// JWKS is a JSON Web Key Set file of further trusted keys, looked up by kid (optional).
	JWKS string
	// LogLevel is the registry's own log level (panic, fatal, error, warn, info, debug).
	LogLevel string
}

// NewRegistry returns the registry as an http.Handler to be served on the caller's listener.
func NewRegistry(ctx context.Context, opts RegistryOptions) (h http.Handler, err error) {
	if opts.LogLevel == "" {
		opts.LogLevel = "warn"
	}
	secret := make([]byte, 32)
	if _, err := io.ReadFull(rand.Reader, secret); err != nil {
		return nil, err
	}
	cfg, err := configuration.Parse(strings.NewReader(fmt.Sprintf(`
version: 0.1
log:
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %q
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
auth:
  token:
    realm: %q
    service: %q
    issuer: %q
    rootcertbundle: %q
    jwks: %q
http:
  secret: %q
`, opts.RootDir, opts.Realm, opts.Service, opts.Issuer, opts.RootCertBundle, opts.JWKS, hex.EncodeToString(secret))))
	if err != nil {
		return nil, fmt.Errorf("registry configuration: %w", err)
	}
	if err := os.MkdirAll(opts.RootDir, 0o700); err != nil {
		return nil, err
	}
	level, err := logrus.ParseLevel(opts.LogLevel)
	if err != nil {
		return nil, fmt.Errorf("registry log level: %w", err)
	}
	logrus.SetLevel(level)
	// NewApp reports configuration problems by panicking; turn that into an error.
	defer func() {
		if r := recover(); r != nil {
			h, err = nil, fmt.Errorf("starting the registry: %v", r)
		}
	}()
	return handlers.NewApp(ctx, cfg), nil
}
