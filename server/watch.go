package server

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// settle is how long the watched files must stay quiet before a reload: a rotation writes a key
// and its certificate, a Secret update swaps several files, and one reload after the last write
// is what is wanted, not one per file (of which the first would be refused as a key that does
// not match its certificate).
const settle = 200 * time.Millisecond

// watched reports whether an event on path may change a watched file: the file itself, or
// Kubernetes' "..data" symlink (and its timestamped targets) beside it. Other files in the same
// folder, such as a bolt store written at every change, are not watched.
func (s *Server) watched(path string) bool {
	path = filepath.Clean(path)
	files := s.gen.Load().files
	if slices.Contains(files, path) {
		return true
	}
	dir := filepath.Dir(path)
	return strings.HasPrefix(filepath.Base(path), "..") && slices.ContainsFunc(files, func(f string) bool { return filepath.Dir(f) == dir })
}

// watchFiles reloads the configuration when the configuration file, or a key, certificate or
// secret file it names, changes, until ctx ends. It watches their directories, not the files:
// editors and tools replace a file by renaming another over it, and Kubernetes swaps a symlink
// in a mounted ConfigMap or Secret, and both end a watch on the file itself. Events are only a
// hint: after they settle, the files' contents are hashed and a reload happens only when they
// differ from what the serving generation was built from, and from the last refused attempt (a
// broken file is refused once, not at every event, until it changes again). It is the same
// scheme as the policy engine's watch of local bundles.
func (s *Server) watchFiles(ctx context.Context) error {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	defer fw.Close()
	var dirs []string
	watchDirs := func() {
		for _, f := range s.gen.Load().files {
			d := filepath.Dir(f)
			if slices.Contains(dirs, d) {
				continue
			}
			if err := fw.Add(d); err != nil {
				s.logger.Warn("watching a configuration folder failed; SIGHUP still reloads", "path", d, "error", err)
				continue
			}
			dirs = append(dirs, d)
		}
	}
	watchDirs()
	timer := time.NewTimer(s.settle)
	timer.Stop()
	refused := ""
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-fw.Events:
			if !ok {
				return nil
			}
			if s.watched(ev.Name) {
				timer.Reset(s.settle)
			}
		case err, ok := <-fw.Errors:
			if !ok {
				return nil
			}
			s.logger.Warn("watching the configuration files", "error", err)
		case <-timer.C:
			g := s.gen.Load()
			fp := fingerprint(g.files)
			if fp == g.fingerprint || fp == refused {
				continue
			}
			if err := s.Reload("file change"); err != nil {
				refused = fp
				continue
			}
			refused = ""
			watchDirs()
		}
	}
}
