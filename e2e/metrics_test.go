package e2e

import (
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/natter-chat/natter/internal/testnode"
)

// scrape reads base/metrics with Prometheus' own text parser: a
// malformed exposition fails here as it would in a Prometheus server.
func scrape(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	r, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer r.Body.Close()
	if r.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(r.Body)
		t.Fatalf("GET /metrics: %d %s", r.StatusCode, b)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(r.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// value sums the family's samples whose labels include want (counter,
// gauge, or a histogram's count).
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	f := fams[name]
	if f == nil {
		return -1
	}
	total := 0.0
next:
	for _, m := range f.Metric {
		labels := map[string]string{}
		for _, l := range m.Label {
			labels[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if labels[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			total += m.Counter.GetValue()
		case m.Gauge != nil:
			total += m.Gauge.GetValue()
		case m.Histogram != nil:
			total += float64(m.Histogram.GetSampleCount())
		}
	}
	return total
}

// waitMetric polls until cond holds for the scraped value.
func waitMetric(t *testing.T, base, name string, labels map[string]string, what string, cond func(float64) bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	var v float64
	for time.Now().Before(deadline) {
		if v = value(scrape(t, base), name, labels); cond(v) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s%v: %v, want %s", name, labels, v, what)
}

// The metrics endpoint parses with Prometheus' parser and its figures
// move with traffic: sends, duplicates, refusals, connections by
// transport, consumers' work, the store's latency, REST answers.
func TestMetricsMoveWithTraffic(t *testing.T) {
	t.Parallel()
	s := start(t)
	base := "http://" + s.addr
	before := scrape(t, base)
	for _, name := range []string{"natter_messages_in_total", "natter_send_ack_seconds", "natter_connections",
		"natter_consumer_pending", "natter_stream_messages", "natter_jetstream_up", "go_goroutines", "process_cpu_seconds_total"} {
		if _, ok := before[name]; !ok && name != "natter_messages_in_total" {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	if v := value(before, "natter_jetstream_up", nil); v != 1 {
		t.Errorf("natter_jetstream_up = %v, want 1", v)
	}

	alice, bob := s.register("alice"), s.register("bob")
	a, b := s.login(alice), s.login(bob)
	ws, _ := s.connect(b, "")
	waitMetric(t, base, "natter_connections", map[string]string{"transport": "websocket"}, "1 open WebSocket", func(v float64) bool { return v == 1 })

	const n = 5
	for i := range n {
		s.sendREST(a, bob, fmt.Sprintf("0b7e9a4c-5d1f-4c3e-9f00-00000000000%d", i), "hello")
	}
	s.sendREST(a, bob, "0b7e9a4c-5d1f-4c3e-9f00-000000000000", "retry") // a retry of the first
	wantError(t, s.do("POST", "/v1/messages", a.access, sendBody("0b7e9a4c-5d1f-4c3e-9f00-0000000000ff", "nobody-at-all", "x")), http.StatusNotFound, "not_found")

	fams := scrape(t, base)
	if v := value(fams, "natter_messages_in_total", map[string]string{"result": "sent"}); v != n {
		t.Errorf(`natter_messages_in_total{result="sent"} = %v, want %d`, v, n)
	}
	if v := value(fams, "natter_messages_in_total", map[string]string{"result": "duplicate"}); v != 1 {
		t.Errorf(`natter_messages_in_total{result="duplicate"} = %v, want 1`, v)
	}
	if v := value(fams, "natter_messages_in_total", map[string]string{"result": "not_found"}); v != 1 {
		t.Errorf(`natter_messages_in_total{result="not_found"} = %v, want 1`, v)
	}
	if v := value(fams, "natter_send_ack_seconds", nil); v != n+1 {
		t.Errorf("natter_send_ack_seconds count = %v, want %d (acks, the duplicate's included)", v, n+1)
	}
	if v := value(fams, "natter_http_requests_total", map[string]string{"route": "POST /v1/messages", "code": "201"}); v != n+1 {
		t.Errorf(`natter_http_requests_total{route="POST /v1/messages",code="201"} = %v, want %d`, v, n+1)
	}
	if v := value(fams, "natter_http_requests_total", map[string]string{"route": "GET /v1/ws", "code": "101"}); v != 1 {
		t.Errorf(`natter_http_requests_total{route="GET /v1/ws",code="101"} = %v, want 1`, v)
	}

	// The message reached bob's socket, so fanout handled it; persist too.
	for i := range n {
		cmid := fmt.Sprintf("0b7e9a4c-5d1f-4c3e-9f00-00000000000%d", i)
		ws.waitFor("message "+cmid, func(f obj) bool { return f["type"] == "message" && f["client_message_id"] == cmid })
	}
	waitMetric(t, base, "natter_consumer_latency_seconds", map[string]string{"consumer": "fanout"}, "at least 5 handled", func(v float64) bool { return v >= n })
	waitMetric(t, base, "natter_consumer_latency_seconds", map[string]string{"consumer": "persist"}, "at least 5 handled", func(v float64) bool { return v >= n })
	waitMetric(t, base, "natter_store_seconds", map[string]string{"op": "save_messages"}, "at least one batch", func(v float64) bool { return v >= 1 })
	waitMetric(t, base, "natter_consumer_pending", map[string]string{"consumer": "fanout"}, "0 once caught up", func(v float64) bool { return v == 0 })
	waitMetric(t, base, "natter_websocket_frames_out_total", nil, "the 5 messages and synced", func(v float64) bool { return v >= n+1 })
	if v := value(scrape(t, base), "natter_stream_last_seq", map[string]string{"stream": "CONV"}); v < n {
		t.Errorf(`natter_stream_last_seq{stream="CONV"} = %v, want at least %d`, v, n)
	}

	ws.close()
	waitMetric(t, base, "natter_connections", map[string]string{"transport": "websocket"}, "0 after the close", func(v float64) bool { return v == 0 })
}

// Rate-limit refusals are counted by limit.
func TestMetricsCountRateLimits(t *testing.T) {
	t.Parallel()
	s := start(t, "--rate-limit", "on", "--send-burst", "2", "--send-rate", "0.01")
	base := "http://" + s.addr
	alice, bob := s.register("alice"), s.register("bob")
	a := s.login(alice)
	limited := 0
	for i := range 5 {
		r := s.do("POST", "/v1/messages", a.access, sendBody(fmt.Sprintf("7d3f0c2e-1111-4a2b-8c3d-00000000000%d", i), bob.id, "hi"))
		if r.status == http.StatusTooManyRequests {
			limited++
		}
	}
	if limited == 0 {
		t.Fatal("no send was rate-limited")
	}
	fams := scrape(t, base)
	if v := value(fams, "natter_rate_limited_total", map[string]string{"limit": "send"}); v != float64(limited) {
		t.Errorf(`natter_rate_limited_total{limit="send"} = %v, want %d`, v, limited)
	}
	if v := value(fams, "natter_messages_in_total", map[string]string{"result": "rate_limited"}); v != float64(limited) {
		t.Errorf(`natter_messages_in_total{result="rate_limited"} = %v, want %d`, v, limited)
	}
}

// --admin-http moves /metrics (and pprof) off the public address, which
// keeps answering /healthz and /readyz as the contract says.
func TestMetricsOnAdminAddress(t *testing.T) {
	t.Parallel()
	admin, err := testnode.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	s := start(t, "--admin-http", admin, "--pprof")
	for path, want := range map[string]int{"/metrics": 404, "/debug/pprof/": 404, "/healthz": 200} {
		if r := s.do("GET", path, "", nil); r.status != want {
			t.Errorf("GET %s on the public address: %d, want %d", path, r.status, want)
		}
	}
	deadline := time.Now().Add(wait)
	for s.do("GET", "/readyz", "", nil).status != 200 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if r := s.do("GET", "/readyz", "", nil); r.status != 200 {
		t.Errorf("GET /readyz on the public address: %d, want 200", r.status)
	}
	fams := scrape(t, "http://"+admin)
	if _, ok := fams["natter_connections"]; !ok {
		t.Errorf("/metrics on --admin-http lacks natter_connections")
	}
	for _, path := range []string{"/debug/pprof/", "/readyz", "/healthz"} {
		r, err := http.Get("http://" + admin + path)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode != 200 {
			t.Errorf("GET %s on --admin-http: %d, want 200", path, r.StatusCode)
		}
	}
}
