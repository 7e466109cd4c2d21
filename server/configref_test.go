package server

import (
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestConfigReferenceMatchesTypes holds docs/configuration.md to the configuration types: every
// key the server accepts is in the reference table, and every key of the table is accepted.
func TestConfigReferenceMatchesTypes(t *testing.T) {
	raw, err := os.ReadFile("../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	start, end := strings.Index(doc, "<!-- config:start -->"), strings.Index(doc, "<!-- config:end -->")
	if start < 0 || end < start {
		t.Fatal("docs/configuration.md has no config:start … config:end table")
	}
	var documented []string
	reloads := map[string]string{} // key -> its reload column
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z0-9_.]+)` \\|.*?[^\\\\]\\|.*?[^\\\\]\\| (yes|restart) \\|").FindAllStringSubmatch(doc[start:end], -1) {
		documented = append(documented, m[1])
		reloads[m[1]] = m[2]
	}
	if rows := strings.Count(doc[start:end], "\n| `"); rows != len(documented) {
		t.Fatalf("%d rows in the table, %d read with a reload column of yes or restart", rows, len(documented))
	}
	accepted := configKeys(reflect.TypeOf(Config{}), "")
	if len(documented) == 0 || len(accepted) == 0 {
		t.Fatalf("nothing to compare: %d documented, %d accepted", len(documented), len(accepted))
	}

	// A documented key covers the accepted keys below it (policy.dry_run stands for its fields).
	covered := func(key string) bool {
		return slices.ContainsFunc(documented, func(d string) bool { return key == d || strings.HasPrefix(key, d+".") })
	}
	for _, key := range accepted {
		if !covered(key) {
			t.Errorf("configuration key %q is accepted but missing from docs/configuration.md", key)
		}
	}
	for _, d := range documented {
		if !slices.ContainsFunc(accepted, func(key string) bool { return key == d || strings.HasPrefix(key, d+".") }) {
			t.Errorf("docs/configuration.md documents %q, which the configuration does not accept", d)
		}
	}

	// The reload column is what Reload does: restart exactly for the keys it refuses to change.
	for _, d := range documented {
		restart := slices.ContainsFunc(restartOnly, func(r restartEntry) bool {
			return !r.toggle && (d == r.key || strings.HasPrefix(d, r.key+"."))
		})
		if want := map[bool]string{true: "restart", false: "yes"}[restart]; reloads[d] != want {
			t.Errorf("docs/configuration.md says %q reloads: %s; the server: %s", d, reloads[d], want)
		}
	}
}

// leafTypes are decoded from one YAML value each, whatever their Go shape.
var leafTypes = map[reflect.Type]bool{
	reflect.TypeOf(Secret{}):    true,
	reflect.TypeOf(Duration(0)): true,
	reflect.TypeOf(OPAConfig{}): true,
}

// configKeys lists the dotted YAML paths of every value a configuration type accepts.
func configKeys(t reflect.Type, prefix string) []string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || leafTypes[t] {
		return []string{strings.TrimSuffix(prefix, ".")}
	}
	var keys []string
	for f := range t.Fields() {
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		switch {
		case tag == "-" || !f.IsExported():
		case opts == "inline":
			keys = append(keys, configKeys(f.Type, prefix)...)
		default:
			keys = append(keys, configKeys(f.Type, prefix+name+".")...)
		}
	}
	return keys
}
