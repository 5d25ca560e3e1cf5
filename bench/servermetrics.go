package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// The server's own figures, from its Prometheus /metrics: CPU seconds and
// RSS from the process collector, the peak RSS natter adds, and the
// counters of what it did (sends accepted, frames written, events fanned
// out). A spawned natter serves them on its HTTP address; another one at
// --url there too unless --admin-http moved them (then --metrics-url).
// /proc is the fallback for a process whose metrics cannot be read.

// Series the bench reads.
const (
	seriesCPU       = "process_cpu_seconds_total"
	seriesRSS       = "process_resident_memory_bytes"
	seriesPeakRSS   = "natter_process_peak_resident_memory_bytes"
	seriesSends     = "natter_messages_in_total"
	seriesFramesOut = "natter_websocket_frames_out_total"
	seriesConsumer  = "natter_consumer_latency_seconds"
)

// serverCounters are natter's counters at one scrape.
type serverCounters struct {
	Sent      float64 // sends accepted as new messages
	FramesOut float64 // WebSocket frames written
	FannedOut float64 // CONV events the fanout consumer finished
}

// metricsReader scrapes one /metrics URL.
type metricsReader struct {
	url string
	hc  *http.Client
}

func newMetricsReader(url string) *metricsReader {
	return &metricsReader{url: url, hc: &http.Client{Timeout: 5 * time.Second}}
}

// read scrapes once.
func (r *metricsReader) read(ctx context.Context) (procSample, serverCounters, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.url, nil)
	if err != nil {
		return procSample{}, serverCounters{}, err
	}
	resp, err := r.hc.Do(req)
	if err != nil {
		return procSample{}, serverCounters{}, fmt.Errorf("scrape %s: %w", r.url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return procSample{}, serverCounters{}, fmt.Errorf("scrape %s: status %d", r.url, resp.StatusCode)
	}
	return parseMetrics(resp.Body, time.Now())
}

// parseMetrics reads a scrape in Prometheus' text format taken at at. It
// fails when the process series are missing: those are what it is for.
func parseMetrics(body io.Reader, at time.Time) (procSample, serverCounters, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(body)
	if err != nil {
		return procSample{}, serverCounters{}, fmt.Errorf("parse metrics: %w", err)
	}
	cpu, ok1 := sum(fams, seriesCPU, nil)
	rss, ok2 := sum(fams, seriesRSS, nil)
	if !ok1 || !ok2 {
		return procSample{}, serverCounters{}, fmt.Errorf("parse metrics: no %s or %s (not a natter, or an old one)", seriesCPU, seriesRSS)
	}
	s := procSample{At: at, CPU: time.Duration(cpu * float64(time.Second)), RSS: int64(rss)}
	if peak, ok := sum(fams, seriesPeakRSS, nil); ok {
		s.PeakRSS = int64(peak)
	}
	var c serverCounters
	c.Sent, _ = sum(fams, seriesSends, map[string]string{"result": "sent"})
	c.FramesOut, _ = sum(fams, seriesFramesOut, nil)
	c.FannedOut, _ = sum(fams, seriesConsumer, map[string]string{"consumer": "fanout"})
	return s, c, nil
}

// sum adds the samples of a family whose labels include want: counters,
// gauges, untyped values, a histogram's count. ok is false when the
// family is absent.
func sum(fams map[string]*dto.MetricFamily, name string, want map[string]string) (total float64, ok bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
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
		case m.Untyped != nil:
			total += m.Untyped.GetValue()
		case m.Histogram != nil:
			total += float64(m.Histogram.GetSampleCount())
		}
	}
	return total, true
}
