package main

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/natter-chat/natter/gateway"
	"github.com/natter-chat/natter/natsnode"
)

// errForced is serve's result when a second signal cut the drain short:
// the exit status then says that the drain was not clean.
var errForced = errors.New("drain cut short by a second signal")

// secondSignal watches SIGINT and SIGTERM from serve's start: the first
// one starts the drain (through serve's ctx), a second closes forced.
// stop is safe to call twice.
func secondSignal() (forced <-chan struct{}, stop func()) {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	f, quit, done := make(chan struct{}), make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for n := 0; ; {
			select {
			case <-sigs:
				if n++; n == 2 {
					close(f)
				}
			case <-quit:
				return
			}
		}
	}()
	var stopped bool
	return f, func() {
		if !stopped {
			stopped = true
			signal.Stop(sigs)
			close(quit)
			<-done
		}
	}
}

// drainGateway is the first half of a graceful drain: /readyz answers 503
// "draining" at once, the listener closes, long-polls answer what they
// have, every session finishes the frame in hand and gets 1001, and
// in-flight REST requests complete; at timeout (or a second signal)
// whatever is left is closed. It returns errForced after a second signal.
func drainGateway(timeout time.Duration, forced <-chan struct{}, gw *gateway.Gateway, srv *http.Server, cancelRequests func(), log *slog.Logger) error {
	began := time.Now()
	log.Info("draining: clients are told to reconnect elsewhere", "drain_timeout", timeout)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	go func() { // ends with ctx, at the latest when drainGateway returns
		select {
		case <-forced:
			log.Warn("second signal during the drain: closing at once")
			cancel()
		case <-ctx.Done():
		}
	}()
	gw.StartDrain()
	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(ctx) }()
	cut := gw.Drain(ctx)
	if serr := <-shut; serr != nil {
		// Requests still running at the timeout: their contexts end, their
		// connections close.
		cancelRequests()
		_ = srv.Close()
	}
	cancelRequests()
	cancel()
	if cut > 0 {
		log.Warn("drain timeout: closed the connections still open", "sessions", cut)
	}
	log.Info("clients drained", "took", time.Since(began).Round(time.Millisecond))
	select {
	case <-forced:
		return errForced
	default:
		return nil
	}
}

// drainConsumers lets the consumers catch up with what was acknowledged
// (within 10 s, or until a second signal); stopping them then hands back
// what they hold unhandled (consumers.runner).
func drainConsumers(forced <-chan struct{}, js jetstream.JetStream, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go func() {
		select {
		case <-forced:
			cancel()
		case <-ctx.Done():
		}
	}()
	drain(ctx, js, log)
}

// closeNATS drains natter's NATS connection (what it published is
// flushed, its subscriptions end) and then stops the embedded server, in
// lame-duck mode on a cluster so its Raft leaderships move to the other
// nodes first. node is nil when natter runs on an external NATS.
func closeNATS(nc *nats.Conn, node *natsnode.Node, log *slog.Logger) {
	if err := nc.Drain(); err == nil {
		deadline := time.Now().Add(5 * time.Second)
		for !nc.IsClosed() && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
	}
	nc.Close()
	if node != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		node.LameDuck(ctx)
		log.Info("nats server stopped")
	}
}
