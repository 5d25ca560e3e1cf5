package bench

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/natter-chat/natter/internal/testnode"
)

const (
	healthTimeout = 60 * time.Second // a first start may build its stores
	stopTimeout   = 15 * time.Second // SIGTERM, then SIGKILL
)

// target is the natter under test: one node, or the nodes of a cluster
// the bench spawned (--nodes).
type target struct {
	// bases are every node's base URL; clients are spread over them,
	// accounts and REST go to the first.
	bases []*url.URL
	// pids are every node's (CPU and RSS are their sum); none when
	// unknown: no server statistics from /proc.
	pids []int
	// natsURL reaches natter's NATS; empty when unknown.
	natsURL string
	// metricsURL is natter's Prometheus /metrics, where the server's
	// figures come from when it answers (else /proc, with pid).
	metricsURL string

	node    *testnode.Node    // set when the bench spawned one server
	cluster *testnode.Cluster // set when it spawned a cluster
	dirs    []string          // the cluster's data directories, removed on Close
	log     *slog.Logger
}

// first is the node accounts and REST go to.
func (t *target) first() *url.URL { return t.bases[0] }

// openTarget spawns a natter or checks that the one at cfg.URL is healthy.
func openTarget(ctx context.Context, cfg Config, log *slog.Logger) (*target, error) {
	if cfg.Spawn {
		return spawn(ctx, cfg, log)
	}
	base, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("parse --url: %w", err)
	}
	t := &target{bases: []*url.URL{base}, natsURL: cfg.NATSURL, metricsURL: cfg.MetricsURL, log: log}
	if cfg.PID != 0 {
		t.pids = []int{cfg.PID}
	}
	if t.metricsURL == "" {
		t.metricsURL = base.JoinPath("/metrics").String()
	}
	if err := t.waitHealthy(ctx, 5*time.Second); err != nil {
		return nil, err
	}
	return t, nil
}

// spawn starts `natter serve` through internal/testnode: a free loopback
// port, a temporary data directory, rate limits off; it returns once the
// node is healthy.
func spawn(ctx context.Context, cfg Config, log *slog.Logger) (*target, error) {
	bin := cfg.NatterBin
	if bin == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("find the natter binary: %w", err)
		}
		bin = exe
	}
	opts := testnode.Options{
		Binary:   bin,
		Flags:    append([]string{"--fsync", cfg.Fsync}, strings.Fields(cfg.ServerArgs)...),
		Ready:    healthTimeout,
		LogBytes: 64 << 10,
		NATS:     cfg.Presence, // idle reads the presence bucket's writes
	}
	if cfg.Nodes > 1 {
		return spawnCluster(ctx, cfg, opts, log)
	}
	// One node on PostgreSQL too, for a comparison with a cluster.
	opts.PostgresURL = cfg.PostgresURL
	n, err := testnode.Launch(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("spawn %s: %w", bin, err)
	}
	base := &url.URL{Scheme: "http", Host: n.Addr()}
	t := &target{bases: []*url.URL{base}, pids: []int{n.Pid()}, natsURL: n.NATSURL(), node: n, log: log}
	t.metricsURL = base.JoinPath("/metrics").String()
	log.Info("spawned natter", "pid", n.Pid(), "url", base.String(), "fsync", cfg.Fsync, "dir", n.DataDir())
	return t, nil
}

// spawnCluster starts cfg.Nodes nodes forming one JetStream cluster on
// loopback routes, sharing a database created on cfg.PostgresURL
// (testnode.LaunchCluster), and returns once every node is ready. The
// server's figures are the nodes' /proc summed: each node's /metrics
// counts only its own part.
func spawnCluster(ctx context.Context, cfg Config, opts testnode.Options, log *slog.Logger) (*target, error) {
	t := &target{log: log}
	for range cfg.Nodes {
		dir, err := os.MkdirTemp("", "natter-bench-node-")
		if err != nil {
			t.Close()
			return nil, fmt.Errorf("data directory: %w", err)
		}
		t.dirs = append(t.dirs, dir)
	}
	opts.PostgresURL = cfg.PostgresURL
	opts.Ready = 2 * healthTimeout // the nodes wait for their quorum
	c, err := testnode.LaunchCluster(ctx, t.dirs, opts)
	if err != nil {
		t.Close()
		return nil, fmt.Errorf("spawn a cluster of %d nodes: %w", cfg.Nodes, err)
	}
	t.cluster = c
	for _, n := range c.Nodes() {
		t.bases = append(t.bases, &url.URL{Scheme: "http", Host: n.Addr()})
		t.pids = append(t.pids, n.Pid())
	}
	t.natsURL = c.Node(0).NATSURL()
	log.Info("spawned a natter cluster", "nodes", cfg.Nodes, "pids", t.pids, "first", t.first().String(), "fsync", cfg.Fsync)
	return t, nil
}

// waitHealthy polls GET /healthz until it answers 200.
func (t *target) waitHealthy(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	u := t.first().JoinPath("/healthz").String()
	hc := &http.Client{Timeout: time.Second}
	var last error
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return err
		}
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s: %w (last: %v)", u, ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Close stops a spawned server (SIGTERM, then SIGKILL after stopTimeout)
// and removes its directory; it does nothing for a server it did not
// start. Safe to call twice.
func (t *target) Close() {
	if t.cluster != nil {
		if err := t.cluster.Close(); err != nil { // SIGTERM each node, drop the database
			t.log.Warn("stop the spawned cluster", "err", err)
		}
		t.cluster = nil
	}
	for _, dir := range t.dirs {
		_ = os.RemoveAll(dir)
	}
	t.dirs = nil
	if t.node == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	if t.node.Running() {
		if err := t.node.Term(ctx); err != nil {
			t.log.Warn("natter did not stop cleanly on SIGTERM", "pid", t.node.Pid(), "err", err)
		}
	}
	if err := t.node.Close(); err != nil { // SIGKILL if still running
		t.log.Warn("clean up the spawned natter", "err", err)
	}
}
