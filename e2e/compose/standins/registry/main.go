// Command registry is the stand-in for the registry:3 image in the compose test: distribution's
// own registry command (`registry serve CONFIG`, configuration file and REGISTRY_* environment
// overrides), with the storage driver and the token access controller docker-compose.yml uses.
// It exists only because the test machine can pull no image.
package main

import (
	"os"

	"github.com/distribution/distribution/v3/registry"

	// What deploy/compose/registry.yml configures registers itself.
	_ "github.com/distribution/distribution/v3/registry/auth/token"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
)

func main() {
	if err := registry.RootCmd.Execute(); err != nil {
		os.Exit(1)
	}
}
