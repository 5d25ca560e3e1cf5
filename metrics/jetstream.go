package metrics

import (
	"context"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// JetStream reads natter's streams and durable consumers from JetStream
// when scraped: what each stream holds and how far behind each consumer
// is. Reading at scrape time costs one API call per stream and consumer
// per scrape and nothing on the hot path.
type JetStream struct {
	js        jetstream.JetStream
	streams   []string
	consumers map[string][]string // stream -> durable consumers
	log       *slog.Logger

	msgs, bytes, lastSeq                      *prometheus.Desc
	pending, ackPending, redelivered, waiting *prometheus.Desc
	up                                        *prometheus.Desc
}

// WatchJetStream registers a collector for the named streams and, per
// stream, consumers.
func (m *Metrics) WatchJetStream(js jetstream.JetStream, streams []string, consumers map[string][]string, log *slog.Logger) {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, "", name), help, labels, nil)
	}
	m.reg.MustRegister(&JetStream{js: js, streams: streams, consumers: consumers, log: log,
		msgs:        d("stream_messages", "Messages a stream holds now.", "stream"),
		bytes:       d("stream_bytes", "Bytes a stream holds now.", "stream"),
		lastSeq:     d("stream_last_seq", "A stream's last sequence: grows by one per message ever written (its rate is the write rate).", "stream"),
		pending:     d("consumer_pending", "Events not yet delivered to the consumer (its lag).", "stream", "consumer"),
		ackPending:  d("consumer_ack_pending", "Events delivered to the consumer and not yet acknowledged.", "stream", "consumer"),
		redelivered: d("consumer_redelivered", "Events being redelivered now (delivered more than once and not yet acknowledged).", "stream", "consumer"),
		waiting:     d("consumer_waiting_pulls", "Pull requests the consumer keeps outstanding (0 means it is not consuming).", "stream", "consumer"),
		up:          d("jetstream_up", "1 when the scrape could read JetStream, else 0."),
	})
}

func (c *JetStream) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.msgs, c.bytes, c.lastSeq, c.pending, c.ackPending, c.redelivered, c.waiting, c.up} {
		ch <- d
	}
}

func (c *JetStream) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	up := 1.0
	for _, name := range c.streams {
		s, err := c.js.Stream(ctx, name)
		if err != nil {
			c.log.Debug("metrics: stream info", "stream", name, "err", err)
			up = 0
			continue
		}
		st := s.CachedInfo().State
		ch <- prometheus.MustNewConstMetric(c.msgs, prometheus.GaugeValue, float64(st.Msgs), name)
		ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.GaugeValue, float64(st.Bytes), name)
		ch <- prometheus.MustNewConstMetric(c.lastSeq, prometheus.CounterValue, float64(st.LastSeq), name)
		for _, cn := range c.consumers[name] {
			ci, err := s.Consumer(ctx, cn)
			if err != nil {
				c.log.Debug("metrics: consumer info", "consumer", cn, "err", err)
				up = 0
				continue
			}
			i := ci.CachedInfo()
			ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(i.NumPending), name, cn)
			ch <- prometheus.MustNewConstMetric(c.ackPending, prometheus.GaugeValue, float64(i.NumAckPending), name, cn)
			ch <- prometheus.MustNewConstMetric(c.redelivered, prometheus.GaugeValue, float64(i.NumRedelivered), name, cn)
			ch <- prometheus.MustNewConstMetric(c.waiting, prometheus.GaugeValue, float64(i.NumWaiting), name, cn)
		}
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, up)
}

// Connections registers a gauge of open client connections by
// transport, read from f at scrape time.
func (m *Metrics) Connections(f func() map[string]int64) {
	m.reg.MustRegister(&connections{f: f, desc: prometheus.NewDesc(prometheus.BuildFQName(namespace, "", "connections"),
		"Open client connections by transport (websocket; longpoll: long-polls waiting now; nats: NATS-native sessions).", []string{"transport"}, nil)})
}

type connections struct {
	f    func() map[string]int64
	desc *prometheus.Desc
}

func (c *connections) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *connections) Collect(ch chan<- prometheus.Metric) {
	for t, n := range c.f() {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), t)
	}
}
