// Command registry3 serves a distribution v3 registry configured from flags, for end-to-end
// tests that need a registry apart from `regoauth dev` (other trust settings, other services).
// It logs as JSON, so that tests can read what the registry itself did: at info level, every
// completed request with its status ("response completed") and every refused one with the
// reason ("error authorizing context: insufficient scope").
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"

	"github.com/sirupsen/logrus"

	"github.com/regoauth/regoauth/devstack"
)

func main() {
	var o devstack.RegistryOptions
	addr := flag.String("addr", "localhost:5000", "listen address")
	flag.StringVar(&o.RootDir, "root", "", "storage root directory")
	flag.StringVar(&o.Realm, "realm", "", "token realm URL")
	flag.StringVar(&o.Service, "service", "", "service name (token audience)")
	flag.StringVar(&o.Issuer, "issuer", "", "token issuer")
	flag.StringVar(&o.RootCertBundle, "rootcertbundle", "", "PEM bundle of trusted token signing certificates")
	flag.StringVar(&o.JWKS, "jwks", "", "JWKS file of trusted token signing keys")
	flag.StringVar(&o.LogLevel, "log-level", "info", "registry log level")
	flag.Parse()
	h, err := devstack.NewRegistry(context.Background(), o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "registry3:", err)
		os.Exit(1)
	}
	logrus.SetFormatter(&logrus.JSONFormatter{})
	if err := http.ListenAndServe(*addr, h); err != nil {
		fmt.Fprintln(os.Stderr, "registry3:", err)
		os.Exit(1)
	}
}
