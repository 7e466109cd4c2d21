package policy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// settle is how long a local bundle must stay unchanged before it is reloaded: copying a
// directory or writing a tarball is many events, and one reload after the last is enough.
const settle = 200 * time.Millisecond

// watcher reloads local (file://) bundles when they change. OPA reads such bundles once, at
// start; a reload is the bundle plugin's own Trigger, so verification, activation, status and
// the keep-the-old-revision-on-failure rule are OPA's.
type watcher struct {
	e       *Engine
	fs      *fsnotify.Watcher
	targets []*watchTarget
}

type watchTarget struct {
	name, path string
	dir        bool
	// loaded fingerprints the content last handed to OPA; events that leave it unchanged
	// (editors' temporary files, a touch, a symlink swap to the same content) reload nothing.
	loaded string
}

func newWatcher(e *Engine, local map[string]string) (*watcher, error) {
	w := &watcher{e: e}
	if len(local) == 0 {
		return w, nil
	}
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	w.fs = fw
	for name, path := range local {
		st, err := os.Stat(path)
		t := &watchTarget{name: name, path: filepath.Clean(path), dir: err == nil && st.IsDir()}
		t.loaded = fingerprint(t.path, t.dir)
		w.targets = append(w.targets, t)
		// A file is watched through its directory: tools replace files by renaming, and
		// Kubernetes swaps a symlink, and both end a watch on the file itself.
		root := filepath.Dir(t.path)
		if t.dir {
			root = t.path
		}
		if err := w.addTree(root, t.dir); err != nil {
			fw.Close()
			return nil, err
		}
	}
	return w, nil
}

// close ends the watches of a watcher that will not run.
func (w *watcher) close() {
	if w.fs != nil {
		w.fs.Close()
	}
}

// addTree watches dir, and every directory below it when recursive.
func (w *watcher) addTree(dir string, recursive bool) error {
	if !recursive {
		return w.fs.Add(dir)
	}
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return w.fs.Add(p)
		}
		return nil
	})
}

func (t *watchTarget) affectedBy(path string) bool {
	if t.dir {
		return path == t.path || strings.HasPrefix(path, t.path+string(filepath.Separator))
	}
	return filepath.Dir(path) == filepath.Dir(t.path)
}

func (w *watcher) run(ctx context.Context) {
	if w.fs == nil {
		<-ctx.Done()
		return
	}
	defer w.fs.Close()
	timer := time.NewTimer(settle)
	timer.Stop()
	pending := map[*watchTarget]bool{}
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.fs.Events:
			if !ok {
				return
			}
			for _, t := range w.targets {
				if !t.affectedBy(ev.Name) {
					continue
				}
				pending[t] = true
				if t.dir && ev.Has(fsnotify.Create) {
					if st, err := os.Stat(ev.Name); err == nil && st.IsDir() {
						if err := w.addTree(ev.Name, true); err != nil {
							w.e.opts.Logger.Warn("watching a new policy directory", "path", ev.Name, "error", err)
						}
					}
				}
			}
			if len(pending) > 0 {
				timer.Reset(settle)
			}
		case err, ok := <-w.fs.Errors:
			if !ok {
				return
			}
			w.e.opts.Logger.Warn("watching local policy bundles", "error", err)
		case <-timer.C:
			for t := range pending {
				if fp := fingerprint(t.path, t.dir); fp != t.loaded {
					t.loaded = fp
					w.e.reloadLocal(ctx, t.name)
				}
			}
			clear(pending)
		}
	}
}

// fingerprint hashes a bundle file, or every file of a bundle directory with its path. A
// missing or unreadable bundle has a fingerprint too, so its return is noticed.
func fingerprint(path string, dir bool) string {
	h := sha256.New()
	hashFile := func(p string) {
		f, err := os.Open(p)
		if err != nil {
			io.WriteString(h, "error:"+err.Error())
			return
		}
		defer f.Close()
		io.Copy(h, f)
	}
	if !dir {
		hashFile(path)
		return hex.EncodeToString(h.Sum(nil))
	}
	err := filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(path, p)
		io.WriteString(h, rel+"\x00")
		if d.Type()&fs.ModeSymlink != 0 {
			// A link is refused where the same file is loaded (linkIn): replacing one with the
			// other changes the bundle.
			target, _ := os.Readlink(p)
			io.WriteString(h, "link:"+target+"\x00")
		}
		hashFile(p)
		return nil
	})
	if err != nil {
		io.WriteString(h, "error:"+err.Error())
	}
	return hex.EncodeToString(h.Sum(nil))
}
