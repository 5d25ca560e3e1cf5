package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/natter-chat/natter/chat"
	"github.com/natter-chat/natter/consumers"
	"github.com/natter-chat/natter/gateway"
	"github.com/natter-chat/natter/metrics"
	"github.com/natter-chat/natter/streams"
)

// observer and consumerObserver keep a nil *Metrics out of the
// interfaces: a typed nil would not compare equal to nil there.
func observer(m *metrics.Metrics) chat.Observer {
	if m == nil {
		return nil
	}
	return m
}

func consumerObserver(m *metrics.Metrics) consumers.Observer {
	if m == nil {
		return nil
	}
	return m
}

// watch registers what metrics reads at scrape time: streams and
// consumers from JetStream, the gateway's connections and frames.
func watch(m *metrics.Metrics, js jetstream.JetStream, gw *gateway.Gateway, log *slog.Logger) {
	if m == nil {
		return
	}
	m.WatchJetStream(js, []string{streams.StreamConv, streams.StreamInbox, streams.StreamDeadLetter},
		map[string][]string{streams.StreamConv: {streams.ConsumerPersist, streams.ConsumerFanout, streams.ConsumerReceipts, streams.ConsumerErase}}, log)
	m.Connections(func() map[string]int64 {
		st := gw.Stats()
		return map[string]int64{"websocket": st.WebSockets, "longpoll": st.LongPolls, "nats": st.NATSSessions}
	})
	m.Counter("websocket_frames_out_total", "Frames written to WebSockets: events, acks, errors, pongs.",
		func() float64 { return float64(gw.Stats().WSFrames) })
	m.Counter("longpoll_events_out_total", "Events answered to long-polls.",
		func() float64 { return float64(gw.Stats().PolledEvents) })
}

// serveAdmin serves h on addr (metrics, pprof) until the returned stop is
// called.
func serveAdmin(addr string, h http.Handler, log *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on --admin-http %s: %w", addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("admin http server", "err", err)
		}
	}()
	log.Info("admin serving", "http", "http://"+ln.Addr().String())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	}, nil
}
