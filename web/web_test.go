package web

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// The page and its files are served from the binary with a policy that
// lets it run only its own scripts; nothing else is the app's.
func TestServesTheAppWithItsPolicy(t *testing.T) {
	h := Handler()
	for path, want := range map[string]string{"/": "<title>natter</title>", "/static/app.js": "natter's web app", "/static/style.css": ".msg"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), want) {
			t.Errorf("GET %s: %d, body lacks %q", path, rec.Code, want)
		}
		if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
			t.Errorf("GET %s: Content-Security-Policy %q", path, csp)
		}
	}
	for _, r := range []*http.Request{httptest.NewRequest(http.MethodGet, "/v1/me", nil), httptest.NewRequest(http.MethodPost, "/", nil),
		httptest.NewRequest(http.MethodGet, "/staticx", nil)} {
		if Routes(r) {
			t.Errorf("%s %s taken by the web app", r.Method, r.URL.Path)
		}
	}
	if !Routes(httptest.NewRequest(http.MethodGet, "/static/app.js", nil)) || !Routes(httptest.NewRequest(http.MethodGet, "/", nil)) {
		t.Error("the app's own paths are not routed to it")
	}
}
