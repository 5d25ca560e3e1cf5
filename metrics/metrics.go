// Package metrics is natter's Prometheus instrumentation: one registry
// per node, the observers chat, gateway and consumers report to (each
// package defines the small interface it needs; *Metrics implements them
// all), a store decorator that times the store, and a collector that
// reads streams and consumers from JetStream at scrape time.
package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

const namespace = "natter"

// Latency buckets from 0.5 ms to 10 s: natter's targets sit at 100 ms,
// its fast paths well under 1 ms.
var latencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// Metrics is one node's registry and instruments. Its methods are safe
// for concurrent use; a nil *Metrics observes nothing.
type Metrics struct {
	reg *prometheus.Registry

	sends        *prometheus.CounterVec
	ackLatency   prometheus.Histogram
	rateLimited  *prometheus.CounterVec
	consumerLag  *prometheus.HistogramVec
	deadLettered *prometheus.CounterVec
	storeLatency *prometheus.HistogramVec
	storeErrors  *prometheus.CounterVec
	pushResults  *prometheus.CounterVec
	httpRequests *prometheus.CounterVec
	httpLatency  *prometheus.HistogramVec
}

// New returns a registry with natter's instruments and Go's and the
// process's own collectors.
func New() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.sends = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "messages_in_total",
		Help: "Sends handled, by result: sent (a new message), duplicate (a retry answered with the original) or the refusal's error code."},
		[]string{"result"})
	m.ackLatency = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: namespace, Name: "send_ack_seconds",
		Help: "Time from a send reaching the chat core to its ack (durable in JetStream), for sends that were acknowledged.", Buckets: latencyBuckets})
	m.rateLimited = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "rate_limited_total",
		Help: "Requests refused by a rate limit, by limit."}, []string{"limit"})
	m.consumerLag = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "consumer_latency_seconds",
		Help:    "Time from an event's write to CONV to its effect being done and acknowledged, by consumer (fanout: the event is in every inbox, i.e. delivered to connected devices' subscriptions).",
		Buckets: latencyBuckets}, []string{"consumer"})
	m.deadLettered = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "dead_lettered_total",
		Help: "Events a consumer gave up on and copied to the dead-letter stream, by consumer."}, []string{"consumer"})
	m.storeLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "store_seconds",
		Help: "Latency of store operations on the hot paths, by operation.", Buckets: latencyBuckets}, []string{"op"})
	m.storeErrors = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "store_errors_total",
		Help: "Store operations that failed (not-found answers excluded), by operation."}, []string{"op"})
	m.pushResults = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "push_total",
		Help: "Push notifications handed to a provider, by provider and result."}, []string{"provider", "result"})
	m.httpRequests = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "http_requests_total",
		Help: "REST requests answered, by route pattern and status code (WebSocket upgrades and long-polls included)."},
		[]string{"route", "code"})
	m.httpLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "http_request_seconds",
		Help:    "REST answer latency by route pattern (long-polls and WebSockets excluded: they last as long as the client waits).",
		Buckets: latencyBuckets}, []string{"route"})
	m.reg.MustRegister(m.sends, m.ackLatency, m.rateLimited, m.consumerLag, m.deadLettered, m.storeLatency, m.storeErrors,
		m.pushResults, m.httpRequests, m.httpLatency,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if c := peakRSS(); c != nil {
		m.reg.MustRegister(c)
	}
	return m
}

// Handler serves the registry in Prometheus' text format; nil for a nil
// *Metrics.
func (m *Metrics) Handler() http.Handler {
	if m == nil {
		return nil
	}
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Sent records one send's outcome: result is "sent", "duplicate" or the
// refusal's error code; d is how long the ack took.
func (m *Metrics) Sent(result string, d time.Duration) {
	if m == nil {
		return
	}
	m.sends.WithLabelValues(result).Inc()
	if result == "sent" || result == "duplicate" {
		m.ackLatency.Observe(d.Seconds())
	}
}

// RateLimited records a refusal by the named limit.
func (m *Metrics) RateLimited(limit string) {
	if m == nil {
		return
	}
	m.rateLimited.WithLabelValues(limit).Inc()
}

// Handled records that consumer finished an event written to CONV age ago.
func (m *Metrics) Handled(consumer string, age time.Duration) {
	if m == nil {
		return
	}
	m.consumerLag.WithLabelValues(consumer).Observe(max(age, 0).Seconds())
}

// DeadLettered records an event the consumer gave up on.
func (m *Metrics) DeadLettered(consumer string) {
	if m == nil {
		return
	}
	m.deadLettered.WithLabelValues(consumer).Inc()
}

// Pushed records one notification's result with a provider ("gorush",
// "apns", "fcm"): "ok", "dead_token" or "failed" (retried later).
func (m *Metrics) Pushed(provider, result string) {
	if m == nil {
		return
	}
	m.pushResults.WithLabelValues(provider, result).Inc()
}

// Counter registers a counter read from f at scrape time (f must only
// grow).
func (m *Metrics) Counter(name, help string, f func() float64) {
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help}, f))
}
