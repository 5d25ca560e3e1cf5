package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/peterbourgon/ff/v3"

	"github.com/natter-chat/natter/config"
	"github.com/natter-chat/natter/consumers"
	"github.com/natter-chat/natter/gateway"
	"github.com/natter-chat/natter/gateway/auth"
	"github.com/natter-chat/natter/natsnode"
	"github.com/natter-chat/natter/streams"
)

// serve runs one node until ctx ends: embedded NATS, the store, the
// consumers and the gateway, stopped in the reverse order.
func serve(ctx context.Context, args []string) error {
	cfg, err := parseServeFlags(args)
	if err != nil {
		return err
	}
	log := newLogger(cfg.LogLevel)
	slog.SetDefault(log)

	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
	node, err := natsnode.Start(natsnode.Options{
		StoreDir: filepath.Join(cfg.DataDir, "jetstream"), Listen: cfg.NATSListen,
		SyncAlways: cfg.Fsync == config.FsyncAlways, SyncInterval: cfg.SyncInterval, Logger: log,
	})
	if err != nil {
		return err
	}
	defer node.Shutdown()
	if url := node.ClientURL(); url != "" {
		log.Info("nats listening", "url", url)
	}
	nc, err := node.Connect("natter")
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	if err := streams.Ensure(ctx, js, streams.Setup{
		Limits: streams.Limits{Replicas: 1, ConvMaxAge: cfg.ConvRetention, InboxMaxAge: cfg.InboxRetention,
			MaxBytes: cfg.StreamMaxBytes, DuplicateWindow: cfg.DuplicateWindow},
		Tuning:   streams.ConsumerTuning{MaxAckPending: cfg.MaxAckPending, MaxDeliver: cfg.MaxDeliver, AckWait: 30 * time.Second},
		TokenTTL: cfg.AccessTokenTTL,
	}); err != nil {
		return err
	}

	db, err := openStore(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer db.Close()

	key, err := auth.LoadOrCreateKey(filepath.Join(cfg.DataDir, "keys", "token.key"))
	if err != nil {
		return err
	}
	gw, err := gateway.New(ctx, gateway.Config{
		ReadLimit: cfg.ReadLimit, Heartbeat: cfg.Heartbeat, SendQueue: cfg.SendQueue, AllowedOrigins: cfg.AllowedOrigins,
		RateLimit: cfg.RateLimit, SendBurst: cfg.SendBurst, SendRate: cfg.SendRate, AuthBurst: cfg.AuthBurst, AuthRate: cfg.AuthRate,
		Pprof: cfg.Pprof, SoleSequencer: true, Logger: log,
	}, db, nc, auth.NewSigner(key, cfg.AccessTokenTTL))
	if err != nil {
		return fmt.Errorf("start gateway: %w", err)
	}
	defer gw.Close()

	// Consumers run until consumersCtx ends, which happens after the
	// gateway stopped taking sends, so they drain what it accepted.
	consumersCtx, stopConsumers := context.WithCancel(context.Background())
	defer stopConsumers()
	var wg sync.WaitGroup
	// This process is the only one consuming, so it may take back at once
	// what a killed predecessor left in flight.
	copts := consumers.Options{MaxDeliver: cfg.MaxDeliver, ResetOnStart: true, Logger: log}
	errs := make(chan error, 3)
	for _, c := range []interface{ Run(context.Context) error }{
		consumers.NewPersist(js, db, copts),
		consumers.NewFanout(js, db, copts),
		consumers.NewReceipts(js, db, copts),
	} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.Run(consumersCtx); err != nil {
				errs <- err
			}
		}()
	}
	defer wg.Wait()
	defer stopConsumers()

	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.HTTPAddr, err)
	}
	// Requests (long-polls, WebSockets) end when baseCtx does, at shutdown;
	// net/http's Shutdown alone would wait for them.
	baseCtx, cancelRequests := context.WithCancel(context.Background())
	defer cancelRequests()
	srv := &http.Server{Handler: gw.Handler(), ReadHeaderTimeout: 10 * time.Second,
		BaseContext: func(net.Listener) context.Context { return baseCtx }}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Info("natter serving", "http", "http://"+ln.Addr().String(), "data", cfg.DataDir, "store", cfg.Store, "fsync", cfg.Fsync)

	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case err := <-served:
		return fmt.Errorf("http server: %w", err)
	case err := <-errs:
		log.Error("consumer failed, shutting down", "err", err)
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	gw.Close() // WebSockets get 1001 first: they are hijacked, Shutdown ignores them
	cancelRequests()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Warn("http shutdown", "err", err)
	}
	// Let the consumers catch up with what was acknowledged, briefly.
	drain(shutdownCtx, js, log)
	return nil
}

// parseServeFlags reads settings from flags, then NATTER_* variables,
// then the -config file (earlier sources win), and validates them.
func parseServeFlags(args []string) (config.Server, error) {
	cfg := config.Default()
	fs := flag.NewFlagSet("natter serve", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	fs.String("config", "", "config file: one \"flag value\" per line")
	if err := ff.Parse(fs, args, ff.WithEnvVarPrefix("NATTER"), ff.WithConfigFileFlag("config"), ff.WithConfigFileParser(ff.PlainParser)); err != nil {
		return cfg, err
	}
	if err := cfg.Validate(); err != nil {
		return cfg, fmt.Errorf("invalid settings:\n%w", err)
	}
	return cfg, nil
}

// drain waits until persist and fanout have handled everything in CONV.
func drain(ctx context.Context, js jetstream.JetStream, log *slog.Logger) {
	wm := streams.NewWatermark(js, 10*time.Millisecond)
	last, err := wm.ConvLastSeq(ctx)
	if err == nil {
		err = wm.Wait(ctx, last, streams.ConsumerPersist, streams.ConsumerFanout)
	}
	if err != nil {
		log.Warn("consumers not drained; they resume on the next start", "err", err)
	}
}

func newLogger(level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
}
