package metrics

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/natter-chat/natter/store"
)

// A node started with --metrics=false has a nil *Metrics: every call on
// it must be a no-op, never a panic.
func TestNilMetricsObservesNothing(t *testing.T) {
	var m *Metrics
	m.Sent("sent", time.Millisecond)
	m.RateLimited("send")
	m.Handled("fanout", time.Second)
	m.DeadLettered("fanout")
	m.Pushed("gorush", "ok")
	if m.Handler() != nil {
		t.Error("nil Metrics has a handler")
	}
	h := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	if got := m.HTTP(h); got == nil {
		t.Error("nil Metrics dropped the handler")
	}
	var w MessageWriter
	if m.TimeWrites(w) != w {
		t.Error("nil Metrics wrapped the writer")
	}
}

type failingStore struct {
	MessageWriter
	err error
}

func (f failingStore) DeleteForUser(context.Context, string, int64, string) error { return f.err }

func (f failingStore) SaveMessages(context.Context, []store.Message) error { return f.err }

// Store errors count, not-found answers do not (they are answers).
func TestStoreCountsErrorsButNotNotFound(t *testing.T) {
	m := New()
	for _, err := range []error{nil, store.ErrNotFound, store.ErrUnavailable, errors.New("disk")} {
		s := m.TimeWrites(failingStore{err: err})
		_ = s.DeleteForUser(context.Background(), "c", 1, "u")
		_ = s.SaveMessages(context.Background(), nil)
	}
	if got := testutil.ToFloat64(m.storeErrors.WithLabelValues("delete_for_user")); got != 2 {
		t.Errorf("delete_for_user errors = %v, want 2 (unavailable and disk; not found is an answer)", got)
	}
	if got := testutil.ToFloat64(m.storeErrors.WithLabelValues("save_messages")); got != 2 {
		t.Errorf("save_messages errors = %v, want 2", got)
	}
	if got := testutil.CollectAndCount(m.storeLatency); got != 2 {
		t.Errorf("store latency series = %d, want 2 (delete_for_user, save_messages)", got)
	}
}

// Requests are labelled by route pattern, never by raw path (one series
// per id would grow without bound).
func TestHTTPLabelsByRoutePattern(t *testing.T) {
	m := New()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/users/{user_id}", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(404) })
	h := m.HTTP(mux)
	for _, id := range []string{"a", "b", "c"} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/v1/users/"+id, nil))
	}
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/nowhere", nil))
	if got := testutil.ToFloat64(m.httpRequests.WithLabelValues("GET /v1/users/{user_id}", "404")); got != 3 {
		t.Errorf("route counter = %v, want 3", got)
	}
	if got := testutil.ToFloat64(m.httpRequests.WithLabelValues("other", "404")); got != 1 {
		t.Errorf("unrouted counter = %v, want 1", got)
	}
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if !strings.Contains(rec.Body.String(), `natter_http_requests_total{code="404",route="GET /v1/users/{user_id}"} 3`) {
		t.Errorf("exposition lacks the route series:\n%s", rec.Body.String())
	}
}
