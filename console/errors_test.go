package console_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/regoauth/regoauth/admin"
	"github.com/regoauth/regoauth/keystore"
	"github.com/regoauth/regoauth/policy"
)

// What a person can act on — a limit the policy sets, an explanation asked for while another
// runs, a store that cannot take writes — is said as such, with a 4xx or a 503: never the 500
// of a fault on the server's side.

func TestReservationOverThePolicyLimitIsRefusedPlainly(t *testing.T) {
	// The limit of a decision (admin_max_owned) is kept by the store in its write, so a
	// reservation over it is refused there, after the policy allowed it.
	f := newFixtureWith(t, fixtureConfig{extension: selfReservations + `
admin_max_owned := 1 if input.operation == "repos.reserve"
`})
	alice := f.as("alice") // holds shop/alice already: the limit
	alice.get("/console/repos")
	p := alice.post("/console/repos/reserve", url.Values{"csrf": {alice.csrf()}, "repository": {"shop/second"}})
	wantStatus(t, p, http.StatusForbidden, "a reservation over the policy's limit")
	if !strings.Contains(p.body, "A limit is reached: account &#34;alice&#34; holds 1 reservations.") {
		t.Fatalf("the page does not say which limit:\n%s", p.body)
	}
	if _, err := f.store.GetOwnership(ctx, "shop/second"); err == nil {
		t.Fatal("the reservation over the limit was made")
	}
}

func TestExplanationWhileAnotherRunsAsksToRetry(t *testing.T) {
	entered, release := make(chan struct{}, 1), make(chan struct{})
	f := newFixtureWith(t, fixtureConfig{deps: func(d *admin.Deps) {
		d.Explainer = heldExplainer{d.Explainer, entered, release}
	}})
	alice, buyer := f.as("alice"), f.as("buyer")
	var wg sync.WaitGroup
	wg.Go(func() { alice.get("/console/explain?account=alice&repository=shop/alice&action=pull") })
	<-entered // alice's explanation is being computed
	p := buyer.get("/console/explain?account=buyer&repository=shop/alice&action=pull")
	close(release)
	wg.Wait()
	wantStatus(t, p, http.StatusServiceUnavailable, "an explanation asked while another runs")
	if !strings.Contains(p.body, "Another explanation is being computed; retry in a moment.") {
		t.Fatalf("the page does not say to retry:\n%s", p.body)
	}
}

func TestStoreThatCannotTakeWritesIsNotAServerFault(t *testing.T) {
	f := newFixtureWith(t, fixtureConfig{extension: selfReservations, deps: func(d *admin.Deps) { d.Store = readOnlyStore{d.Store} }})
	alice := f.as("alice")
	alice.get("/console/repos")
	p := alice.post("/console/repos/reserve", url.Values{"csrf": {alice.csrf()}, "repository": {"shop/second"}})
	wantStatus(t, p, http.StatusServiceUnavailable, "a reservation the store cannot write")
	if !strings.Contains(p.body, "The store cannot take changes right now.") {
		t.Fatalf("the page does not say why:\n%s", p.body)
	}
}

// selfReservations is an extension that lets every account reserve names for itself.
const selfReservations = `package regoauth.extensions.test

admin_allow if {
	input.operation == "repos.reserve"
	input.target.account == input.principal.account
}
`

// heldExplainer holds each explanation until released, as a long traced evaluation does.
type heldExplainer struct {
	admin.Explainer
	entered chan<- struct{}
	release <-chan struct{}
}

func (h heldExplainer) Explain(ctx context.Context, in *policy.Input) (policy.Explanation, error) {
	select {
	case h.entered <- struct{}{}:
	default:
	}
	<-h.release
	return h.Explainer.Explain(ctx, in)
}

// readOnlyStore refuses reservations as a store on a full or read-only disk does.
type readOnlyStore struct{ admin.Store }

func (readOnlyStore) Reserve(context.Context, keystore.Ownership, int) error {
	return keystore.ErrNotWritable
}

// TestUnconfirmedChangeIsNotShownAsDone: a change the store's replicas did not confirm in time
// (Redis with confirm_replicas) was made, but may be lost: the page says so with a 503, rather
// than showing it done.
func TestUnconfirmedChangeIsNotShownAsDone(t *testing.T) {
	f := newFixtureWith(t, fixtureConfig{deps: func(d *admin.Deps) { d.Store = unconfirmedStore{d.Store} }})
	mallory := f.as("mallory")
	id := keyID(f.newKey("mallory", keystore.Restrictions{}))
	mallory.get("/console/keys/revoke?id=" + id)
	p := mallory.post("/console/keys/revoke", url.Values{"csrf": {mallory.csrf()}, "id": {id}})
	wantStatus(t, p, http.StatusServiceUnavailable, "a revocation the replicas did not confirm")
	if !strings.Contains(p.body, "may be lost if the store fails now") {
		t.Fatalf("the page does not say the change may be lost:\n%s", p.body)
	}
	if k, err := f.store.GetKey(ctx, id); err != nil || !k.Revoked {
		t.Fatalf("the key was not revoked: %+v %v", k, err)
	}
}

// unconfirmedStore makes revocations as a Redis store whose replicas do not answer does: on the
// primary, reported unconfirmed.
type unconfirmedStore struct{ admin.Store }

func (s unconfirmedStore) RevokeKey(ctx context.Context, id string) error {
	if err := s.Store.RevokeKey(ctx, id); err != nil {
		return err
	}
	return keystore.ErrUnconfirmed
}
