package gateway

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// A web app on an origin in --allowed-origins can call the REST API: its
// preflights are answered and its answers readable; other origins get
// no CORS headers (the browser then refuses to read the answer).
func TestCORSForAllowedOrigins(t *testing.T) {
	g := &Gateway{cfg: Config{AllowedOrigins: []string{"https://app.example"}}}
	called := 0
	h := g.cors(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		called++
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusTooManyRequests)
	}))

	pre := httptest.NewRequest(http.MethodOptions, "/v1/messages", nil)
	pre.Header.Set("Origin", "https://app.example")
	pre.Header.Set("Access-Control-Request-Method", "POST")
	pre.Header.Set("Access-Control-Request-Headers", "authorization, content-type")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, pre)
	if rec.Code != http.StatusNoContent || called != 0 {
		t.Fatalf("preflight: %d (handler called %d times), want 204 without the handler", rec.Code, called)
	}
	for k, want := range map[string]string{"Access-Control-Allow-Origin": "https://app.example",
		"Access-Control-Allow-Methods": corsAllowMethods, "Access-Control-Allow-Headers": corsAllowHeaders} {
		if got := rec.Header().Get(k); got != want {
			t.Errorf("preflight %s = %q, want %q", k, got, want)
		}
	}

	req := httptest.NewRequest(http.MethodPost, "/v1/messages", nil)
	req.Header.Set("Origin", "https://app.example")
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Header().Get("Access-Control-Allow-Origin") != "https://app.example" || rec.Header().Get("Access-Control-Expose-Headers") != "Retry-After" || called != 1 {
		t.Errorf("answer to an allowed origin: %v", rec.Header())
	}

	for _, origin := range []string{"https://evil.example", ""} {
		req := httptest.NewRequest(http.MethodOptions, "/v1/messages", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Header().Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("origin %q got CORS headers: %v", origin, rec.Header())
		}
	}
}
