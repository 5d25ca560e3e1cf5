package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"github.com/peterbourgon/ff/v3"
	"github.com/peterbourgon/ff/v3/fftoml"
	"github.com/peterbourgon/ff/v3/ffyaml"

	"github.com/natter-chat/natter/chat"
	"github.com/natter-chat/natter/chat/auth"
	"github.com/natter-chat/natter/config"
	"github.com/natter-chat/natter/consumers"
	"github.com/natter-chat/natter/gateway"
	"github.com/natter-chat/natter/internal/connlimit"
	"github.com/natter-chat/natter/internal/datadir"
	"github.com/natter-chat/natter/metrics"
	"github.com/natter-chat/natter/natsnode"
	"github.com/natter-chat/natter/store"
	"github.com/natter-chat/natter/streams"
)

// serve runs one node until ctx ends: embedded NATS, the store, the
// consumers and the gateway, stopped in the reverse order.
func serve(ctx context.Context, args []string) error {
	cfg, err := parseServeFlags(args)
	if err != nil {
		return err
	}
	forced, stopSignals := secondSignal()
	defer stopSignals()
	log := newLogger(cfg.LogLevel, cfg.LogFormat)
	slog.SetDefault(log)

	// Everything natter creates (JetStream's files, the database and its
	// -wal and -shm, keys) is for this user only, whatever the umask.
	syscall.Umask(0o077)
	dir, err := datadir.Open(cfg.DataDir, log)
	if err != nil {
		return err
	}
	defer dir.Close()
	// The token key also encrypts cursors and, on a cluster, yields the
	// keys the nodes share (cluster.go): read before NATS starts.
	key, err := auth.LoadOrCreateKey(filepath.Join(cfg.DataDir, "keys", "token.key"))
	if err != nil {
		return err
	}
	var operator natsnode.Credentials
	var calloutKey nkeys.KeyPair // signs the NATS-native clients' logins
	calloutIssuer := ""
	if cfg.NATSListen != "" && !cfg.NATSInsecure {
		if operator, err = natsnode.LoadOrCreateOperator(cfg.DataDir); err != nil {
			return err
		}
		if calloutKey, err = newCalloutKey(cfg, key); err != nil {
			return fmt.Errorf("nats auth callout key: %w", err)
		}
		if calloutIssuer, err = calloutKey.PublicKey(); err != nil {
			return fmt.Errorf("nats auth callout key: %w", err)
		}
	}
	// An embedded server, alone or one node of a cluster, or an external
	// cluster (cluster.go).
	link, err := startNATS(cfg, key, natsnode.Options{
		StoreDir: filepath.Join(cfg.DataDir, "jetstream"), Listen: cfg.NATSListen,
		SyncAlways: cfg.Fsync == config.FsyncAlways, SyncInterval: cfg.SyncInterval, Logger: log,
		Operator: operator, Insecure: cfg.NATSInsecure, CalloutIssuer: calloutIssuer,
	}, log)
	if err != nil {
		return err
	}
	nc := link.nc
	if node := link.node; node != nil {
		defer node.Shutdown()
		// A stream that a write error closed (no descriptors, a full disk)
		// is reopened as soon as its files can be written again, without
		// a restart; stopped before the server. Not on a cluster: there
		// the other replicas serve, and reopening would disturb them.
		if !cfg.Cluster.Embedded() {
			guardCtx, stopGuard := context.WithCancel(context.Background())
			guarded := make(chan struct{})
			go func() { defer close(guarded); node.Guard(guardCtx, 5*time.Second, log) }()
			defer func() { stopGuard(); <-guarded }()
		}
		if url := node.ClientURL(); url != "" && operator.User != "" {
			log.Info("nats listening", "url", url, "user", operator.User,
				"password_file", filepath.Join(cfg.DataDir, natsnode.OperatorFile))
		}
	}
	defer nc.Close()
	defer closeNATS(nc, link.node, log) // before the server stops: drain.go
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	if err := waitJetStream(ctx, js, link, log); err != nil {
		return err
	}
	cfg = clusterMode(cfg, link, log)
	setup := streams.Setup{
		Limits: streams.Limits{Replicas: cfg.StreamReplicas, ConvMaxAge: cfg.ConvRetention, InboxMaxAge: cfg.InboxRetention,
			MaxBytes: cfg.StreamMaxBytes, DuplicateWindow: cfg.DuplicateWindow},
		Tuning: streams.ConsumerTuning{MaxAckPending: cfg.MaxAckPending, MaxDeliver: cfg.MaxDeliver, AckWait: cfg.AckWait,
			Pinned: cfg.Cluster.On()},
		TokenTTL: cfg.AccessTokenTTL,
	}
	if err := ensureStreams(ctx, js, setup, cfg.FanoutPartitions, cfg.Cluster.On(), log); err != nil {
		return err
	}

	db, err := openStore(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer db.Close()
	var m *metrics.Metrics // nil observes nothing
	if cfg.Metrics {
		m = metrics.New()
	}

	core, err := chat.New(ctx, chat.Config{
		RateLimit: cfg.RateLimit, SendBurst: cfg.SendBurst, SendRate: cfg.SendRate,
		SoleSequencer: cfg.SoleSequencer, Observer: observer(m), Logger: log,
		PresenceLease: cfg.PresenceLease, PollIdle: cfg.PresenceTimeout + cfg.Heartbeat,
		MaxPresenceSubscriptions: cfg.MaxPresenceSubscriptions,
	}, db, nc, auth.NewSigner(key, cfg.AccessTokenTTL))
	if err != nil {
		return fmt.Errorf("start chat: %w", err)
	}
	// cmd owns nc: only it sets handlers on it.
	nc.SetReconnectHandler(func(*nats.Conn) { core.Sync.Reconnected() })
	coreCtx, stopCore := context.WithCancel(context.Background())
	coreDone := make(chan struct{})
	go func() {
		defer close(coreDone)
		if err := core.Run(coreCtx); err != nil {
			log.Error("chat stopped", "err", err)
		}
	}()
	defer func() { stopCore(); <-coreDone }()

	var consumersUp, consumersWant atomic.Int32
	gw := gateway.New(gateway.Config{
		ReadLimit: cfg.ReadLimit, Heartbeat: cfg.Heartbeat, PresenceTimeout: cfg.PresenceTimeout, SendQueue: cfg.SendQueue, AllowedOrigins: cfg.AllowedOrigins,
		RateLimit: cfg.RateLimit, AuthBurst: cfg.AuthBurst, AuthRate: cfg.AuthRate,
		MaxWSPerUser: uncapped(cfg.MaxWSPerUser), MaxPollsPerUser: uncapped(cfg.MaxPollsPerUser),
		Pprof: cfg.Pprof, Metrics: m.Handler(), Admin: cfg.AdminHTTP != "", RateLimited: m.RateLimited, Logger: log,
		ReadyChecks: []gateway.ReadyCheck{
			{Name: "nats", Check: func(context.Context) error {
				if !nc.IsConnected() {
					return fmt.Errorf("not connected (%s)", nc.Status())
				}
				return nil
			}},
			{Name: "streams", Check: func(ctx context.Context) error { return streams.Check(ctx, js) }},
			// A stream closed by a write error is present but refuses writes.
			{Name: "jetstream", Check: jetStreamHealth(link, js)},
			{Name: "store", Check: func(ctx context.Context) error {
				if _, err := db.UserByID(ctx, "readyz-probe"); err != nil && !errors.Is(err, store.ErrNotFound) {
					return err
				}
				return nil
			}},
			{Name: "consumers", Check: func(context.Context) error {
				if n, want := consumersUp.Load(), consumersWant.Load(); want == 0 || n != want {
					return fmt.Errorf("%d of %d running", n, want)
				}
				return nil
			}},
		},
	}, core)
	gwCtx, stopGateway := context.WithCancel(context.Background())
	gwDone := make(chan struct{})
	go func() { defer close(gwDone); _ = gw.Run(gwCtx) }()
	defer func() { stopGateway(); <-gwDone }()
	if calloutKey != nil {
		// NATS-native clients (docs/protocol.md): logins through the auth
		// callout, requests and sessions on natter.api.>.
		natsDone := make(chan struct{})
		go func() {
			defer close(natsDone)
			if err := gw.ServeNATS(gwCtx, nc, gateway.NATSConfig{Issuer: calloutKey}); err != nil {
				log.Error("nats-native clients", "err", err)
			}
		}()
		defer func() { stopGateway(); <-natsDone }()
	}
	defer gw.Close()
	defer serveOperator(db, core, nc, log)()

	// Consumers run until consumersCtx ends, which happens after the
	// gateway stopped taking sends, so they drain what it accepted.
	consumersCtx, stopConsumers := context.WithCancel(context.Background())
	defer stopConsumers()
	var wg sync.WaitGroup
	// This process is the only one consuming, so it may take back at once
	// what a killed predecessor left in flight.
	copts := consumers.Options{MaxDeliver: cfg.MaxDeliver, ResetOnStart: cfg.ResetOnStart, Observer: consumerObserver(m), Logger: log}
	watch(m, js, gw, log)
	running := []interface{ Run(context.Context) error }{
		consumers.NewPersist(js, m.TimeWrites(db), copts),
		consumers.NewFanoutQueued(js, db, copts, consumers.QueueOptions{Threshold: cfg.FanoutQueueThreshold, Partitions: cfg.FanoutPartitions}),
		consumers.NewFanoutWorkers(js, cfg.FanoutPartitions, copts),
		consumers.NewReceipts(js, db, copts),
		consumers.NewErase(nc, js, db, copts),
	}
	if pw, err := newPushWorker(ctx, cfg, js, setup, db, core.Sessions, core.Sync.FormatCursor, m, copts); err != nil {
		return err
	} else if pw != nil {
		running = append(running, pw)
	}
	consumersWant.Store(int32(len(running)))
	errs := make(chan error, len(running))
	for _, c := range running {
		wg.Add(1)
		consumersUp.Add(1)
		go func() {
			defer wg.Done()
			defer consumersUp.Add(-1)
			if err := c.Run(consumersCtx); err != nil {
				errs <- err
			}
		}()
	}
	defer wg.Wait()
	defer stopConsumers()

	// Listen only once every stored revocation is known: clients then
	// never meet the gateway's "starting" answer, and a revoked token
	// never passes.
	select {
	case <-core.RevocationsLoaded():
	case <-ctx.Done():
		return nil
	case <-time.After(30 * time.Second):
		return fmt.Errorf("revocations (bucket %s) not loaded after 30s", streams.BucketSessions)
	}
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.HTTPAddr, err)
	}
	// Requests (long-polls, WebSockets) end when baseCtx does, at shutdown;
	// net/http's Shutdown alone would wait for them.
	baseCtx, cancelRequests := context.WithCancel(context.Background())
	defer cancelRequests()
	limited, err := limitListener(ln, cfg, log)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: connlimit.BodyTimeout(m.HTTP(withWebApp(cfg.Web, gw.Handler())), cfg.BodyTimeout),
		ReadHeaderTimeout: 10 * time.Second, WriteTimeout: cfg.WriteTimeout, IdleTimeout: cfg.IdleTimeout,
		BaseContext: func(net.Listener) context.Context { return baseCtx }}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(limited) }()
	log.Info("natter serving", "http", "http://"+ln.Addr().String(), "data", cfg.DataDir, "store", cfg.Store, "fsync", cfg.Fsync)
	if cfg.AdminHTTP != "" {
		stopAdmin, err := serveAdmin(cfg.AdminHTTP, gw.AdminHandler(), log)
		if err != nil {
			return err
		}
		defer stopAdmin()
	}

	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case err := <-served:
		return fmt.Errorf("http server: %w", err)
	case err := <-errs:
		log.Error("consumer failed, shutting down", "err", err)
	}
	// A graceful drain (drain.go); the deferred calls then stop the
	// consumers, chat, the store and NATS in the reverse order of start.
	err = drainGateway(cfg.DrainTimeout, forced, gw, srv, cancelRequests, log)
	if !cfg.Cluster.On() {
		// Alone, a node lets its consumers catch up before it goes; on a
		// cluster the other nodes' consumers (the same durables) carry
		// on, and this one's hand back what they hold when they stop.
		drainConsumers(forced, js, log)
	}
	return err
}

// parseServeFlags reads settings from flags, then NATTER_* variables,
// then the -config file (earlier sources win), and validates them.
func parseServeFlags(args []string) (config.Server, error) {
	cfg, _, err := parseSettings("natter serve", args)
	return cfg, err
}

// parseSettings reads serve's settings (flags, NATTER_* variables, the
// -config file) for the command name, validated; it returns the flag set
// for commands that look at positional arguments.
func parseSettings(name string, args []string) (config.Server, *flag.FlagSet, error) {
	cfg := config.Default()
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	configFile := fs.String("config", "", "config file: TOML (.toml), YAML (.yaml, .yml), JSON (.json), or lines of \"flag value\"")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: %s [flags]\n\n%s\nFlags:\n", name, precedence)
		fs.PrintDefaults()
	}
	// The parser is picked when ff calls it, after the flags and the
	// environment have set -config.
	parser := func(r io.Reader, set func(name, value string) error) error {
		return configParser(*configFile)(r, set)
	}
	if err := ff.Parse(fs, args, ff.WithEnvVarPrefix("NATTER"), ff.WithConfigFileFlag("config"), ff.WithConfigFileParser(parser)); err != nil {
		return cfg, fs, err
	}
	if err := cfg.Validate(); err != nil {
		return cfg, fs, fmt.Errorf("invalid settings:\n%w", err)
	}
	return cfg, fs, nil
}

// limitListener caps client connections per address and in all, so that
// they never take the descriptors JetStream and the store need.
func limitListener(ln net.Listener, cfg config.Server, log *slog.Logger) (net.Listener, error) {
	budget, limit, reserve, err := connlimit.ClientBudget()
	if err != nil {
		return nil, err
	}
	maxConns := budget
	if cfg.MaxConns > 0 && cfg.MaxConns < budget {
		maxConns = cfg.MaxConns
	}
	perAddr := cfg.MaxConnsPerAddr
	if !cfg.RateLimit {
		perAddr = 0
	}
	if limit-reserve < 1024 {
		log.Warn("few file descriptors for client connections; raise the open files limit (ulimit -n)", "rlimit_nofile", limit, "reserve", reserve, "max_conns", maxConns)
	}
	log.Info("client connection caps", "max_conns", maxConns, "per_addr", perAddr, "rlimit_nofile", limit, "fd_reserve", reserve)
	return connlimit.New(ln, connlimit.Config{PerAddr: perAddr, Max: maxConns, Logger: log}), nil
}

// precedence is how settings combine, for `natter serve -h`.
const precedence = `Every flag can also be set as an environment variable, NATTER_ then the
flag's name in upper case with dashes as underscores (--sync-interval is
NATTER_SYNC_INTERVAL, --rate-limit is NATTER_RATE_LIMIT), or in the file
given with -config (or NATTER_CONFIG). A flag beats the environment, which
beats the file. The file's format follows its extension: .toml (key =
"value"), .yaml or .yml (key: value), .json ({"key": "value"}); any other
name is read as lines of "flag value". Keys are the flag names.
`

// configParser picks the config file's parser by its extension.
func configParser(path string) ff.ConfigFileParser {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".toml":
		return fftoml.Parser
	case ".yaml", ".yml":
		return ffyaml.Parser
	case ".json":
		return ff.JSONParser
	default:
		return ff.PlainParser
	}
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

// newLogger logs to stderr at level, as text or JSON (one object a line).
func newLogger(level, format string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: l}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

// uncapped maps a flag's 0 (no cap) to the gateway's negative (its zero
// means the default).
func uncapped(n int) int {
	if n == 0 {
		return -1
	}
	return n
}
