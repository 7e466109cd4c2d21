// Command registry28 serves a distribution v2.8 registry for the compatibility tests: the
// registry v2.8 fleets still run, with filesystem storage and token authentication. It lives in
// its own module so the main module never depends on v2.8. Like registry3 it logs as JSON at
// info level, so that tests can read every completed request and every refusal.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/docker/distribution/configuration"
	"github.com/docker/distribution/registry/handlers"
	"github.com/sirupsen/logrus"

	_ "github.com/docker/distribution/registry/auth/token"
	_ "github.com/docker/distribution/registry/storage/driver/filesystem"
)

func main() {
	addr := flag.String("addr", "localhost:5002", "listen address")
	root := flag.String("root", "", "storage root directory")
	realm := flag.String("realm", "", "token realm URL")
	service := flag.String("service", "", "service name (token audience)")
	issuer := flag.String("issuer", "", "token issuer")
	bundle := flag.String("rootcertbundle", "", "PEM bundle of trusted token signing certificates")
	flag.Parse()
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
http:
  secret: registry28-test-secret
`, *root, *realm, *service, *issuer, *bundle)))
	if err != nil {
		fmt.Fprintln(os.Stderr, "registry28:", err)
		os.Exit(1)
	}
	logrus.SetLevel(logrus.InfoLevel)
	logrus.SetFormatter(&logrus.JSONFormatter{})
	app := handlers.NewApp(context.Background(), cfg)
	fmt.Fprintln(os.Stderr, "registry28 listening on", *addr)
	if err := http.ListenAndServe(*addr, app); err != nil {
		fmt.Fprintln(os.Stderr, "registry28:", err)
		os.Exit(1)
	}
}
