package bench

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

const (
	healthTimeout = 60 * time.Second // a first start may build its stores
	stopTimeout   = 15 * time.Second // SIGTERM, then SIGKILL
)

// target is the natter under test.
type target struct {
	base *url.URL
	pid  int // 0 when unknown: no server statistics

	// set when the bench spawned the server
	cmd    *exec.Cmd
	dir    string
	exited chan struct{} // closed once cmd.Wait returned
	log    *slog.Logger
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
	t := &target{base: base, pid: cfg.PID, log: log}
	if err := t.waitHealthy(ctx, 5*time.Second); err != nil {
		return nil, err
	}
	return t, nil
}

// spawn starts `natter serve` on a free loopback port with a temporary data
// directory and waits until it is healthy.
func spawn(ctx context.Context, cfg Config, log *slog.Logger) (*target, error) {
	bin := cfg.NatterBin
	if bin == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("find the natter binary: %w", err)
		}
		bin = exe
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "natter-bench-")
	if err != nil {
		return nil, fmt.Errorf("make data directory: %w", err)
	}
	logFile, err := os.Create(filepath.Join(dir, "server.log"))
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("make server log: %w", err)
	}
	defer logFile.Close() // the child has its own descriptor
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	cmd := exec.Command(bin, "serve", "--http", addr, "--data", filepath.Join(dir, "data"),
		"--rate-limit", "off", "--fsync", cfg.Fsync)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	t := &target{
		base:   &url.URL{Scheme: "http", Host: addr},
		pid:    cmd.Process.Pid,
		cmd:    cmd,
		dir:    dir,
		exited: make(chan struct{}),
		log:    log,
	}
	go func() { // owned by t: Close waits for it
		_ = cmd.Wait()
		close(t.exited)
	}()
	log.Info("spawned natter", "pid", t.pid, "url", t.base.String(), "fsync", cfg.Fsync, "dir", dir)
	if err := t.waitHealthy(ctx, healthTimeout); err != nil {
		err = fmt.Errorf("%w\n%s", err, t.logTail())
		t.Close()
		return nil, err
	}
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
		case <-t.exited: // nil unless spawned
			return fmt.Errorf("natter exited before it was healthy: %s", t.cmd.ProcessState)
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
	if t.cmd == nil {
		return
	}
	select {
	case <-t.exited:
	default:
		_ = t.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-t.exited:
		case <-time.After(stopTimeout):
			t.log.Warn("natter did not stop on SIGTERM; killing it", "pid", t.pid)
			_ = t.cmd.Process.Kill()
			<-t.exited
		}
	}
	if t.dir != "" {
		if err := os.RemoveAll(t.dir); err != nil {
			t.log.Warn("remove natter data directory", "dir", t.dir, "err", err)
		}
		t.dir = ""
	}
}

// logTail is the end of a spawned server's log, for error messages.
func (t *target) logTail() string {
	b, err := os.ReadFile(filepath.Join(t.dir, "server.log"))
	if err != nil {
		return ""
	}
	const keep = 2048
	if len(b) > keep {
		b = b[len(b)-keep:]
	}
	return "server log (tail):\n" + string(bytes.TrimSpace(b))
}

// freePort asks the kernel for a free loopback port. Another process may
// take it before natter binds it; that shows as a failed start.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
