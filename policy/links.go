package policy

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
)

// errLinked marks a local bundle folder that holds a symbolic link.
var errLinked = errors.New("symbolic link in a local bundle folder")

// linkIn finds a symbolic link in the local bundle folder dir: dir itself, or any entry under
// it. OPA's loader reads a bundle folder's regular files only and passes over links without a
// word, so a file behind one (data.json holding the deny rules, say) would be left out of the
// policy while the rest of the folder is activated. A folder holding one is refused instead.
// A Kubernetes ConfigMap mounted as a folder is made of links; a bundle file (policy.bundle)
// mounted from one is read through its link, as a file should be.
func linkIn(dir string) error {
	st, err := os.Lstat(dir)
	if err != nil {
		return nil // not there: the loader says so
	}
	if st.Mode()&fs.ModeSymlink != 0 {
		to, err := os.Stat(dir)
		if err != nil || !to.IsDir() {
			return nil // a bundle file is read through its link
		}
		real, _ := filepath.EvalSymlinks(dir)
		return fmt.Errorf("%w: the bundle folder %q is a symbolic link (to %q), and the bundle loader would read nothing through it: name the folder it leads to", errLinked, dir, real)
	}
	if !st.IsDir() {
		return nil
	}
	var found error
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.Type()&fs.ModeSymlink != 0 {
			found = fmt.Errorf("%w: %q is a symbolic link, which the bundle loader passes over, so what it leads to would be left out of the policy: put the file itself there, or build the folder into a bundle file (opa build) and name it as the bundle (a ConfigMap mounted as a folder is made of links: mount a bundle file from it instead)", errLinked, p)
			return filepath.SkipAll
		}
		return nil
	})
	return found
}

// linkedFolders checks every local bundle folder (localDirs) for a symbolic link.
func (e *Engine) linkedFolders() error {
	for _, dir := range slices.Sorted(slices.Values(e.localDirs)) {
		if err := linkIn(dir); err != nil {
			return err
		}
	}
	return nil
}
