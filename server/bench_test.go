package server

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkTokenThroughServer is one anonymous token request through every route of the main
// listener: the in-flight limit, the mux, the serving generation's token endpoint.
func BenchmarkTokenThroughServer(b *testing.B) {
	cfg := testConfig(b)
	s, err := New(ctx, cfg, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	h, err := s.Handler()
	if err != nil {
		b.Fatal(err)
	}
	req := httptest.NewRequest("GET", "/token?service=registry.example.com&scope=repository:a:pull", nil)
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatalf("HTTP %d", w.Code)
		}
	}
}
