package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"

	"github.com/open-policy-agent/opa/v1/util"
)

// LocalBundle is the name the bundle of Source.Dir or Source.Bundle has in OPA's configuration,
// decision logs and status.
const LocalBundle = "policy"

// BuiltinBundle is the name of the bundle activated from Source.Builtin.
const BuiltinBundle = "builtin"

// localKeyID names the verification key of Source.Signing in OPA's configuration.
const localKeyID = "regoauth-policy-signing"

// Source says where the policy comes from. Everything is optional: the zero Source is an engine
// that serves only what LoadFS activates.
type Source struct {
	// Builtin is a bundle (Rego, data, optional .manifest) activated before anything else, e.g.
	// the library in package policies. Configured bundles add data and extensions to it; a
	// configured bundle whose roots overlap the built-in bundle's is refused, so a bundle that
	// replaces the library needs Builtin nil.
	Builtin fs.FS
	// Dir and Bundle are a bundle directory and a bundle tarball (`opa build` output) on local
	// disk. Either becomes the bundle LocalBundle of the OPA configuration, as
	// {"resource": "file://PATH"}, and is reloaded when it changes.
	Dir    string
	Bundle string
	// Signing, when set, refuses a Dir or Bundle that is not signed with this key.
	Signing *Signing
	// OPAConfig is OPA's own configuration file (YAML or JSON, ${ENV} references expanded as OPA
	// does): services, bundles, keys, decision_logs, status, labels, discovery. Bundles whose
	// resource is a file:// URL are reloaded when they change, like Dir and Bundle.
	OPAConfig []byte
}

// Signing is the key that a local bundle must be signed with (`opa build --signing-key` or
// `opa sign`).
type Signing struct {
	// Key is a PEM public key, or the shared secret of an HS* algorithm.
	Key string
	// Algorithm is the JWT algorithm of the signature; OPA's default is RS256.
	Algorithm string
	// Scope, when set, must equal the signature's scope claim.
	Scope string
}

// ErrConfig marks a policy source that cannot be used as configured.
var ErrConfig = errors.New("invalid policy configuration")

// envRef is ${NAME} in an OPA configuration file. OPA expands these when it reads its own
// configuration file; its loader for that is internal, so the same rule is applied here: an
// unset variable stays as written.
var envRef = regexp.MustCompile(`\$\{([^}]+)\}`)

func expandEnv(raw []byte) []byte {
	return envRef.ReplaceAllFunc(raw, func(ref []byte) []byte {
		if v, ok := os.LookupEnv(string(ref[2 : len(ref)-1])); ok {
			return []byte(v)
		}
		return ref
	})
}

// opaConfig returns the OPA configuration (JSON) that serves src, and the names of the bundles
// it configures.
func (src Source) opaConfig() ([]byte, []string, error) {
	cfg := map[string]any{}
	if len(src.OPAConfig) > 0 {
		if err := util.Unmarshal(expandEnv(src.OPAConfig), &cfg); err != nil {
			return nil, nil, fmt.Errorf("%w: OPA configuration: %w", ErrConfig, err)
		}
		if cfg == nil {
			cfg = map[string]any{}
		}
	}
	if src.Dir != "" && src.Bundle != "" {
		return nil, nil, fmt.Errorf("%w: give a bundle directory or a bundle file, not both", ErrConfig)
	}
	if local := src.Dir + src.Bundle; local != "" {
		bundles, _ := cfg["bundles"].(map[string]any)
		if bundles == nil {
			if _, legacy := cfg["bundle"]; legacy {
				return nil, nil, fmt.Errorf("%w: the OPA configuration uses the legacy \"bundle\" key; use \"bundles\" to combine it with a local bundle", ErrConfig)
			}
			bundles = map[string]any{}
			cfg["bundles"] = bundles
		}
		if _, taken := bundles[LocalBundle]; taken {
			return nil, nil, fmt.Errorf("%w: the OPA configuration already has a bundle named %q", ErrConfig, LocalBundle)
		}
		abs, err := filepath.Abs(local)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %w", ErrConfig, err)
		}
		b := map[string]any{"resource": (&url.URL{Scheme: "file", Path: abs}).String()}
		if s := src.Signing; s != nil {
			keys, _ := cfg["keys"].(map[string]any)
			if keys == nil {
				keys = map[string]any{}
				cfg["keys"] = keys
			}
			key := map[string]any{"key": s.Key}
			if s.Algorithm != "" {
				key["algorithm"] = s.Algorithm
			}
			keys[localKeyID] = key
			signing := map[string]any{"keyid": localKeyID}
			if s.Scope != "" {
				signing["scope"] = s.Scope
			}
			b["signing"] = signing
		}
		bundles[LocalBundle] = b
	} else if src.Signing != nil {
		return nil, nil, fmt.Errorf("%w: signing is set but there is no local bundle to verify", ErrConfig)
	}
	var names []string
	if bundles, ok := cfg["bundles"].(map[string]any); ok {
		for name := range bundles {
			names = append(names, name)
		}
		sort.Strings(names)
	}
	raw, err := json.Marshal(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return raw, names, nil
}
