package policy

import (
	"context"
	"errors"
	"maps"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	bundleplugin "github.com/open-policy-agent/opa/v1/plugins/bundle"
)

// Status is what /readyz shows about the policy.
type Status struct {
	Ready bool `json:"ready"`
	// Revision names the active bundles and their revisions.
	Revision string `json:"revision,omitempty"`
	// Generation counts activations since the start; it changes on every reload.
	Generation uint64    `json:"generation,omitempty"`
	Activated  time.Time `json:"activated,omitzero"`
	// Bundles are the configured bundles, loaded or not.
	Bundles []BundleStatus `json:"bundles,omitempty"`
}

// BundleStatus is the state of one configured bundle.
type BundleStatus struct {
	Name           string    `json:"name"`
	ActiveRevision string    `json:"active_revision,omitempty"`
	LastActivation time.Time `json:"last_activation,omitzero"`
	LastAttempt    time.Time `json:"last_attempt,omitzero"`
	// Error is why the newest load failed; the bundle's previous revision, if any, stays active.
	Error string `json:"error,omitempty"`
}

// Status reports the active revision and every configured bundle.
func (e *Engine) Status() Status {
	var st Status
	if r := e.active.Load(); r != nil {
		st = Status{Ready: true, Revision: r.name, Generation: r.generation, Activated: r.activated}
	}
	st.Bundles = e.status.list(e.bundles)
	return st
}

// bundleStatus keeps the newest status of each bundle the bundle plugin reported, and lets
// Start wait for the first load of a local bundle.
type bundleStatus struct {
	mu       sync.Mutex
	byName   map[string]BundleStatus
	first    map[string]chan struct{}
	firstErr map[string]error
}

func newBundleStatus() *bundleStatus {
	return &bundleStatus{byName: map[string]BundleStatus{}, first: map[string]chan struct{}{}, firstErr: map[string]error{}}
}

func (s *bundleStatus) firstChan(name string) chan struct{} {
	ch, ok := s.first[name]
	if !ok {
		ch = make(chan struct{})
		s.first[name] = ch
	}
	return ch
}

// waitFirst waits for the first load of bundle name and returns its error.
func (s *bundleStatus) waitFirst(ctx context.Context, name string) error {
	s.mu.Lock()
	ch := s.firstChan(name)
	s.mu.Unlock()
	select {
	case <-ch:
	case <-ctx.Done():
		return ctx.Err()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.firstErr[name]
}

func (s *bundleStatus) list(configured []string) []BundleStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := map[string]bool{}
	for _, n := range configured {
		names[n] = true
	}
	for n := range s.byName {
		names[n] = true
	}
	out := make([]BundleStatus, 0, len(names))
	for _, n := range slices.Sorted(maps.Keys(names)) {
		st, ok := s.byName[n]
		if !ok {
			st = BundleStatus{Name: n}
		}
		out = append(out, st)
	}
	return out
}

// onBundleStatus receives the bundle plugin's status after every download or load attempt. It
// runs under the plugin's lock, so it only records.
func (e *Engine) onBundleStatus(st bundleplugin.Status) {
	var loadErr error
	if st.Code != "" || len(st.Errors) > 0 {
		msgs := []string{}
		if st.Message != "" {
			msgs = append(msgs, redactText(st.Message))
		}
		for _, err := range st.Errors {
			msgs = append(msgs, redactText(err.Error()))
		}
		loadErr = errors.New(strings.Join(msgs, ": "))
	}
	bs := BundleStatus{Name: st.Name, ActiveRevision: st.ActiveRevision, LastActivation: st.LastSuccessfulActivation, LastAttempt: st.LastRequest}
	s := e.status
	s.mu.Lock()
	prev := s.byName[st.Name]
	if loadErr != nil {
		bs.Error = loadErr.Error()
	}
	s.byName[st.Name] = bs
	ch := s.firstChan(st.Name)
	select {
	case <-ch:
	default:
		s.firstErr[st.Name] = loadErr
		close(ch)
	}
	s.mu.Unlock()

	if loadErr != nil {
		e.metrics.activations.WithLabelValues("failure").Inc()
		e.metrics.bundleFailing.WithLabelValues(st.Name).Set(1)
		e.opts.Logger.Error("policy bundle refused; the active revision stays", "bundle", st.Name, "error", loadErr, "active_revision", e.Revision())
		return
	}
	e.metrics.bundleFailing.WithLabelValues(st.Name).Set(0)
	if !st.LastSuccessfulActivation.IsZero() {
		e.metrics.bundleActivated.WithLabelValues(st.Name).Set(float64(st.LastSuccessfulActivation.Unix()))
	}
	if prev.Error != "" {
		e.opts.Logger.Info("policy bundle loads again", "bundle", st.Name, "revision", st.ActiveRevision)
	}
}

// localBundles maps each configured bundle whose resource is a file:// URL to its path. OPA
// reads those once; the engine watches them and asks OPA to reload them on change.
func (e *Engine) localBundles() map[string]string {
	out := map[string]string{}
	bp := bundleplugin.Lookup(e.manager)
	if bp == nil {
		return out
	}
	for name, src := range bp.Config().Bundles {
		if u, err := url.Parse(src.Resource); err == nil && u.Scheme == "file" {
			out[name] = u.Path
		}
	}
	return out
}

// reloadLocal asks the bundle plugin to read the local bundle name again; a failure is logged
// and recorded by onBundleStatus, and the active revision stays.
func (e *Engine) reloadLocal(ctx context.Context, name string) {
	bp := bundleplugin.Lookup(e.manager)
	if bp == nil {
		return
	}
	loader, ok := bp.Loaders()[name]
	if !ok {
		return
	}
	e.opts.Logger.Info("policy bundle changed on disk; reloading", "bundle", name)
	_ = loader.Trigger(ctx)
}
