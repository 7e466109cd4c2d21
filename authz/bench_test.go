package authz_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkTokenRequest is the whole request path in process: parse, API key check against the
// bolt store, the default Rego policy over 100 grants, intersection, ES256 signing, JSON.
// Compare it with tokens.BenchmarkRawES256 measured in the same run.
func BenchmarkTokenRequest(b *testing.B) {
	e := newEnv(b)
	for i := range 100 {
		e.Grant("user1", fmt.Sprintf("team%d/*", i), "pull")
	}
	query := q("repository:image2:push,pull", "repository:team7/app:pull", "repository:other:pull")
	key := e.keys["user1"]
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		r := httptest.NewRequest("GET", "/token?"+query, nil)
		r.SetBasicAuth("user1", key)
		w := httptest.NewRecorder()
		e.handler.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
}
