package testenv

import (
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"
)

// Burst sends attempts at once — each makes one request with a wrong credential and returns
// its HTTP status and Retry-After — while the credential checks they reach are held: began
// counts the checks begun, let lets them all go on. Once the checks the budget admits began,
// and a moment more for the others to get there were they let through, it lets them go on, and
// fails the test unless exactly budget attempts reached the check at once, as many were
// answered 401, and the rest 429 with a Retry-After of about a minute (a budget refilling one
// attempt a minute, spent by exactly its burst). The token endpoint, the admin API and the
// console's sign-in are held to it alike.
func Burst(t testing.TB, budget int, began func() int64, let func(), attempts []func() (status int, retryAfter string)) {
	t.Helper()
	type answer struct {
		status     int
		retryAfter string
	}
	answers := make([]answer, len(attempts))
	var wg sync.WaitGroup
	for i, attempt := range attempts {
		wg.Go(func() {
			status, retryAfter := attempt()
			answers[i] = answer{status, retryAfter}
		})
	}
	deadline := time.Now().Add(5 * time.Second)
	for began() < int64(budget) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	checking := began()
	let()
	wg.Wait()
	if checking != int64(budget) {
		t.Fatalf("%d wrong credentials at once with a budget of %d: %d reached the check at once", len(attempts), budget, checking)
	}
	unauthorized, throttled := 0, 0
	for i, a := range answers {
		switch a.status {
		case http.StatusUnauthorized:
			unauthorized++
		case http.StatusTooManyRequests:
			throttled++
			if s, err := strconv.Atoi(a.retryAfter); err != nil || s < 55 || s > 60 {
				t.Errorf("attempt %d: Retry-After %q, want about 60", i, a.retryAfter)
			}
		default:
			t.Errorf("attempt %d: HTTP %d", i, a.status)
		}
	}
	if unauthorized != budget || throttled != len(attempts)-budget || began() != int64(budget) {
		t.Fatalf("%d answered 401 and %d 429 after %d checks; want %d, %d and %d", unauthorized, throttled, began(), budget, len(attempts)-budget, budget)
	}
}
