package policy

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"testing"
	"testing/fstest"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/prometheus/client_golang/prometheus"
)

func cachedEngine(t *testing.T, rego string) (*Engine, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	e := New(Options{DecisionCacheBytes: 1 << 20, Registerer: reg})
	if err := e.LoadFS(ctx, fstest.MapFS{"p.rego": {Data: []byte(rego)}}, "t"); err != nil {
		t.Fatal(err)
	}
	return e, reg
}

func cacheCount(t *testing.T, reg *prometheus.Registry, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "regoauth_policy_decision_cache_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// The allowed actions come from data, so a data change must reach the very next decision.
const dataPolicy = `package regoauth.authz
decision := {"access": [{"type": s.type, "name": s.name, "actions": [a | some a in s.actions; a in data.allowed]} | some s in input.scopes]}
`

func TestDecisionCacheServesRepeatsAndForgetsOnDataChange(t *testing.T) {
	e, reg := cachedEngine(t, dataPolicy)
	write := func(v any) {
		t.Helper()
		if err := storage.WriteOne(context.Background(), e.store, storage.AddOp, storage.MustParsePath("/allowed"), v); err != nil {
			t.Fatal(err)
		}
	}
	write([]any{"pull"})
	decide := func() []string {
		t.Helper()
		d, err := e.Decide(ctx, storyInput())
		if err != nil {
			t.Fatal(err)
		}
		return d.Allowed("repository", "image")
	}
	// Kept the second time it is evaluated, then served.
	for range 4 {
		if got := decide(); len(got) != 1 || got[0] != "pull" {
			t.Fatalf("allowed = %v", got)
		}
	}
	if hits := cacheCount(t, reg, "hit"); hits != 2 {
		t.Fatalf("cache hits = %v, want 2", hits)
	}
	write([]any{"pull", "push"})
	if got := decide(); len(got) != 2 {
		t.Fatalf("after the data change, allowed = %v: a stale decision was served", got)
	}
	// A different input is a different decision.
	in := storyInput()
	in.Scopes[0].Name = "other"
	if d, _ := e.Decide(ctx, in); len(d.Allowed("repository", "other")) != 2 || len(d.Allowed("repository", "image")) != 0 {
		t.Fatalf("decision for another input = %+v", d)
	}
}

func TestDecisionCacheSkipsNondeterministicPolicies(t *testing.T) {
	e, reg := cachedEngine(t, `package regoauth.authz
decision := {"access": [{"type": "repository", "name": "image", "actions": [sprintf("%d", [time.now_ns()])]}]}
`)
	first, _ := e.Decide(ctx, storyInput())
	second, _ := e.Decide(ctx, storyInput())
	if len(first.Access) != 1 || len(second.Access) != 1 || first.Access[0].Actions[0] == second.Access[0].Actions[0] || cacheCount(t, reg, "hit") != 0 {
		t.Fatalf("a policy calling time.now_ns was answered from the cache: %v %v", first.Access, second.Access)
	}
}

func TestDecisionCacheOff(t *testing.T) {
	e := New(Options{})
	if e.cache != nil {
		t.Fatal("a cache without DecisionCache")
	}
	if err := e.LoadFS(ctx, fstest.MapFS{"p.rego": {Data: []byte(dataPolicy)}}, "t"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Decide(ctx, storyInput()); err != nil {
		t.Fatal(err)
	}
}

// A policy may reason about a grant's end; a row with another end (a purchase renewed or cut
// short) is another input, never answered from a decision cached for the old one.
const endPolicy = `package regoauth.authz
decision := {"access": [{"type": s.type, "name": s.name, "actions": [a | some a in s.actions; some g in input.grants; g.repository == s.name; a in g.actions; not g.expires]} | some s in input.scopes]}
`

func TestDecisionCacheKeysOnGrantEnds(t *testing.T) {
	e, reg := cachedEngine(t, endPolicy)
	decide := func(end string) []string {
		t.Helper()
		in := storyInput()
		in.Grants[0].Expires = end
		d, err := e.Decide(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		return d.Allowed("repository", "image")
	}
	if got := decide(""); len(got) != 1 {
		t.Fatalf("allowed without an end = %v", got)
	}
	if got := decide("2026-12-31T00:00:00Z"); len(got) != 0 {
		t.Fatalf("allowed with an end = %v: the decision cached for the row without one was served", got)
	}
	if hits := cacheCount(t, reg, "hit"); hits != 0 {
		t.Fatalf("cache hits = %v, want 0", hits)
	}
}

// TestDecisionCacheKeepsOnlyRepeatedInputs: an input evaluated once is remembered by its hash
// alone; the second evaluation keeps the decision and the third is served from it.
func TestDecisionCacheKeepsOnlyRepeatedInputs(t *testing.T) {
	e, reg := cachedEngine(t, dataPolicy)
	for i := range 500 {
		in := storyInput()
		in.Scopes[0].Name = fmt.Sprintf("image%d", i)
		if _, err := e.Decide(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	if n, size := e.cache.lru.Len(), e.cache.size(); n != 0 || size != 0 {
		t.Fatalf("500 inputs seen once left %d entries (%d bytes) in the cache", n, size)
	}
	for range 3 {
		if _, err := e.Decide(ctx, storyInput()); err != nil {
			t.Fatal(err)
		}
	}
	if n, hits := e.cache.lru.Len(), cacheCount(t, reg, "hit"); n != 1 || hits != 1 {
		t.Fatalf("an input seen three times: %d entries, %v hits; want 1 and 1", n, hits)
	}
}

// expiringChain is a PEM chain, root first, whose leaf stops being valid at notAfter.
func expiringChain(t *testing.T, notAfter time.Time) string {
	t.Helper()
	issue := func(tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if parent == nil {
			parent, parentKey = tmpl, key
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
		if err != nil {
			t.Fatal(err)
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return cert, key
	}
	start := time.Now().Add(-time.Hour)
	root, rootKey := issue(&x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "entitlements"},
		NotBefore: start, NotAfter: start.Add(48 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}, nil, nil)
	leaf, _ := issue(&x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "user1"},
		NotBefore: start, NotAfter: notAfter, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}, root, rootKey)
	var chain []byte
	for _, c := range []*x509.Certificate{root, leaf} {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return string(chain)
}

// TestDecisionCacheSkipsPoliciesThatReadTheClock: the x509 chain checks
// (crypto.x509.parse_and_verify_certificates, and its _with_options form without CurrentTime)
// read the clock, though OPA does not mark them nondeterministic. A policy that permits while an
// entitlement certificate is valid must stop permitting when it expires, not keep answering
// from the cache.
func TestDecisionCacheSkipsPoliciesThatReadTheClock(t *testing.T) {
	notAfter := time.Now().Add(1500 * time.Millisecond).Truncate(time.Second).Add(time.Second)
	e, reg := cachedEngine(t, fmt.Sprintf(`package regoauth.authz

entitled if {
	[valid, _] := crypto.x509.parse_and_verify_certificates(%q)
	valid
}

actions := ["pull"] if entitled

else := []

decision := {"access": [{"type": "repository", "name": "image", "actions": actions}], "reasons": []}
`, expiringChain(t, notAfter)))
	for range 3 { // kept the second time its input is seen, answered from the cache the third
		if d, err := e.Decide(ctx, storyInput()); err != nil || len(d.Allowed("repository", "image")) != 1 {
			t.Fatalf("while the certificate is valid: %+v, %v", d, err)
		}
	}
	time.Sleep(time.Until(notAfter) + 200*time.Millisecond)
	d, err := e.Decide(ctx, storyInput())
	if err != nil {
		t.Fatal(err)
	}
	if got := d.Allowed("repository", "image"); len(got) != 0 {
		t.Fatalf("the entitlement certificate expired, yet the decision allows %v (cache hits: %v)", got, cacheCount(t, reg, "hit"))
	}
}

// TestClockReadersAreNondeterministic: every builtin that reads the clock when not given a time
// keeps a revision that calls it out of the decision cache.
func TestClockReadersAreNondeterministic(t *testing.T) {
	for _, call := range []string{
		`io.jwt.decode_verify(input.token, {"secret": "s"})`,
		`crypto.x509.parse_and_verify_certificates(input.chain)`,
		`crypto.x509.parse_and_verify_certificates_with_options(input.chain, {})`,
		`time.now_ns()`,
	} {
		c := ast.MustCompileModules(map[string]string{"p.rego": "package p\n\nx := " + call + "\n"})
		if deterministic(c) {
			t.Errorf("a module calling %s is taken for deterministic", call)
		}
	}
	c := ast.MustCompileModules(map[string]string{"p.rego": "package p\n\nx := io.jwt.decode(input.token)\n"})
	if !deterministic(c) {
		t.Error("a module calling io.jwt.decode (which reads no clock) is taken for nondeterministic")
	}
}
