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

// target is the natter under test.
type target struct {
	base *url.URL
	pid  int // 0 when unknown: no server statistics
	// natsURL reaches natter's NATS; empty when unknown.
	natsURL string
	// metricsURL is natter's Prometheus /metrics, where the server's
	// figures come from when it answers (else /proc, with pid).
	metricsURL string

	node *testnode.Node // set when the bench spawned the server
	log  *slog.Logger
}

// openTarget spawns a natter or checks that the one at cfg.URL is healthy.
func openTarget(ctx context.Context, cfg Config, log *slog.Logger) (*target, error) {
	if cfg.Spawn {
		return spawn(ctx, cfg, log)
	}
	base, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("parse --url: %w", err)
	}
	t := &target{base: base, pid: cfg.PID, natsURL: cfg.NATSURL, metricsURL: cfg.MetricsURL, log: log}
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
	n, err := testnode.Launch(ctx, testnode.Options{
		Binary:   bin,
		Flags:    append([]string{"--fsync", cfg.Fsync}, strings.Fields(cfg.ServerArgs)...),
		Ready:    healthTimeout,
		LogBytes: 64 << 10,
		NATS:     cfg.Presence, // idle reads the presence bucket's writes
	})
	if err != nil {
		return nil, fmt.Errorf("spawn %s: %w", bin, err)
	}
	t := &target{base: &url.URL{Scheme: "http", Host: n.Addr()}, pid: n.Pid(), natsURL: n.NATSURL(), node: n, log: log}
	t.metricsURL = t.base.JoinPath("/metrics").String()
	log.Info("spawned natter", "pid", t.pid, "url", t.base.String(), "fsync", cfg.Fsync, "dir", n.DataDir())
	return t, nil
}

// waitHealthy polls GET /healthz until it answers 200.
func (t *target) waitHealthy(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	u := t.base.JoinPath("/healthz").String()
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
	if t.node == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	if t.node.Running() {
		if err := t.node.Term(ctx); err != nil {
			t.log.Warn("natter did not stop cleanly on SIGTERM", "pid", t.pid, "err", err)
		}
	}
	if err := t.node.Close(); err != nil { // SIGKILL if still running
		t.log.Warn("clean up the spawned natter", "err", err)
	}
}
