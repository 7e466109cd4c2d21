package policy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/regoauth/regoauth/policies"
)

// linkedBundle is a bundle of the library's configuration and an extension: the extension
// permits pull on "image" to everyone, and data.json holds a deny rule that takes it away. Were
// data.json left out, the pull would be granted.
func linkedBundle() map[string]string {
	return map[string]string{
		".manifest": `{"roots": ["regoauth/config", "regoauth/extensions/links"]}`,
		"ext.rego":  "package regoauth.extensions.links\n\npermit contains [\"repository\", \"image\", \"pull\"]\n",
		"data.json": `{"regoauth": {"config": {"deny": [{"repositories": ["image"], "reason": "frozen"}]}}}`,
	}
}

// TestLinksInALocalBundleFolderAreRefused: OPA's loader passes over the symbolic links of a
// bundle folder without a word, so a file behind one was left out of the policy while the rest
// activated (here: the deny rule of data.json, and the pull it refuses was granted). A folder
// holding a link is refused, at start and on reload, whatever the link leads to.
func TestLinksInALocalBundleFolderAreRefused(t *testing.T) {
	link := func(t *testing.T, target, name string) {
		t.Helper()
		if err := os.Symlink(target, name); err != nil {
			t.Fatal(err)
		}
	}
	for name, layout := range map[string]func(t *testing.T, dir string) (policyDir, linkPath string){
		"a file behind a link": func(t *testing.T, dir string) (string, string) {
			b := linkedBundle()
			outside := writeTree(t, t.TempDir(), map[string]string{"data.json": b["data.json"]})
			delete(b, "data.json")
			writeTree(t, dir, b)
			link(t, filepath.Join(outside, "data.json"), filepath.Join(dir, "data.json"))
			return dir, filepath.Join(dir, "data.json")
		},
		"a folder behind a link": func(t *testing.T, dir string) (string, string) {
			b := linkedBundle()
			outside := writeTree(t, t.TempDir(), map[string]string{"data.json": b["data.json"]})
			delete(b, "data.json")
			writeTree(t, dir, b)
			link(t, outside, filepath.Join(dir, "config"))
			return dir, filepath.Join(dir, "config")
		},
		"a ConfigMap mounted as a folder": func(t *testing.T, dir string) (string, string) {
			const stamp = "..2026_12_03_11_00_00.123456789"
			b := linkedBundle()
			writeTree(t, filepath.Join(dir, stamp), b)
			link(t, stamp, filepath.Join(dir, "..data"))
			for name := range b {
				link(t, filepath.Join("..data", name), filepath.Join(dir, name))
			}
			return dir, filepath.Join(dir, "..data")
		},
		"the folder itself a link": func(t *testing.T, dir string) (string, string) {
			writeTree(t, dir, linkedBundle())
			linked := filepath.Join(t.TempDir(), "policy")
			link(t, dir, linked)
			return linked, linked
		},
	} {
		t.Run(name, func(t *testing.T) {
			dir, linkPath := layout(t, t.TempDir())
			e := New(Options{Source: Source{Builtin: policies.FS, Dir: dir}})
			err := e.Start(ctx)
			t.Cleanup(func() { e.Stop(ctx) })
			if err == nil {
				d, derr := e.Decide(ctx, &Input{Principal: Principal{Account: "a"}, Scopes: []Scope{{Type: "repository", Name: "image", Actions: []string{"pull"}}}})
				t.Fatalf("started (decision %v, %v); want the folder refused", d.Access, derr)
			}
			if !strings.Contains(err.Error(), "symbolic link") || !strings.Contains(err.Error(), linkPath) {
				t.Fatalf("error %q does not name the link %s", err, linkPath)
			}
			if e.Ready() {
				t.Fatal("ready with the folder refused")
			}
		})
	}

	t.Run("a link appearing later", func(t *testing.T) {
		dir := writeTree(t, t.TempDir(), linkedBundle())
		e := started(t, Options{Source: Source{Builtin: policies.FS, Dir: dir}})
		pull := func() []string {
			d, err := e.Decide(ctx, &Input{Principal: Principal{Account: "a"}, Scopes: []Scope{{Type: "repository", Name: "image", Actions: []string{"pull"}}}})
			if err != nil {
				t.Fatal(err)
			}
			return d.Allowed("repository", "image")
		}
		if got := pull(); len(got) != 0 {
			t.Fatalf("the deny rule is active, yet %v was allowed", got)
		}
		revision := e.Status().Generation
		// The same deny rule, now behind a link, and the extension changed so that the folder's
		// content differs: a reload is due.
		outside := writeTree(t, t.TempDir(), map[string]string{"data.json": linkedBundle()["data.json"]})
		if err := os.Remove(filepath.Join(dir, "data.json")); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join(outside, "data.json"), filepath.Join(dir, "data.json")); err != nil {
			t.Fatal(err)
		}
		writeTree(t, dir, map[string]string{"ext.rego": "package regoauth.extensions.links\n\n# changed\npermit contains [\"repository\", \"image\", \"pull\"]\n"})
		eventually(t, 5*time.Second, "the reload's refusal", func() bool { return strings.Contains(bundleError(e, LocalBundle), "symbolic link") })
		if got := pull(); len(got) != 0 || e.Status().Generation != revision {
			t.Fatalf("after a refused reload: allowed %v, generation %d (was %d); want the old revision deciding", got, e.Status().Generation, revision)
		}
		// The file put back in place of the link loads again.
		if err := os.Remove(filepath.Join(dir, "data.json")); err != nil {
			t.Fatal(err)
		}
		writeTree(t, dir, map[string]string{"data.json": linkedBundle()["data.json"]})
		eventually(t, 5*time.Second, "the folder loading again", func() bool { return bundleError(e, LocalBundle) == "" })
		if got := pull(); len(got) != 0 {
			t.Fatalf("allowed %v after the reload", got)
		}
	})

	t.Run("a bundle file behind a link loads", func(t *testing.T) {
		tarball := opaBuild(t, writeTree(t, t.TempDir(), linkedBundle()), filepath.Join(t.TempDir(), "bundle.tar.gz"))
		linked := filepath.Join(t.TempDir(), "bundle.tar.gz")
		if err := os.Symlink(tarball, linked); err != nil {
			t.Fatal(err)
		}
		e := started(t, Options{Source: Source{Builtin: policies.FS, Bundle: linked}})
		if !e.Ready() {
			t.Fatal("a bundle file read through its link did not load")
		}
	})
}
