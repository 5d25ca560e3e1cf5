// Package testnode runs natter as its clients see it: the real binary
// (built once per test binary), started as a process on a free port with
// its own data directory, killed with SIGKILL or stopped with SIGTERM and
// restarted on the same directory, and driven over real HTTP (Client) and
// WebSocket (WS) connections. It serves the e2e and torture suites and
// the bench's spawner.
//
// Launch is the core: it takes a context and Options and returns errors,
// so programs (the bench) use it as well as tests. Start wraps it for a
// test: a temporary data directory, a failed start fails the test, and
// the node is stopped and its log tail printed when the test ends.
//
// Node methods that tests call from their own goroutines (a crash loop, a
// load generator) return errors instead of failing the test.
//
// # Store selection
//
// When the environment variable NATTER_TEST_POSTGRES_URL holds a
// PostgreSQL superuser URL (postgres://postgres@127.0.0.1:5433/postgres?sslmode=disable),
// every node Start starts gets a database of its own (CREATE DATABASE
// natter_t_<random>, dropped when the test ends; a restarted node keeps
// it) and runs with --store postgres --postgres-url <its URL>. Unset,
// nodes keep their store in SQLite under the data directory. Launch
// takes the URL from Options.PostgresURL only, so the bench never picks
// it up by accident.
//
// When NATTER_TEST_CASSANDRA_HOSTS names Cassandra contact points as well,
// every node Start starts runs with --store cassandra+postgres: its own
// PostgreSQL database as above, and its messages in a keyspace of its own
// (natter_t_<random>, created by natter at its first start, dropped when
// the test ends). Launch takes them from Options.CassandraHosts only.
package testnode

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/natter-chat/natter/natsnode"
)

// DefaultReady bounds the wait for /healthz after a start: JetStream
// recovers its files first, which takes seconds on a loaded machine.
const DefaultReady = 60 * time.Second

// Options configure a node.
type Options struct {
	// Flags are extra `natter serve` flags, e.g. "--fsync", "always".
	Flags []string
	// DataDir is the state directory. Empty means a new temporary one:
	// tb.TempDir() with Start; with Launch one that Close removes.
	DataDir string
	// RateLimit keeps natter's default rate limits. Without it the node
	// runs with --rate-limit off, unless Flags set --rate-limit.
	RateLimit bool
	// NATS exposes the embedded NATS server on a free port (NATSURL).
	NATS bool
	// Ready bounds each wait for /healthz (DefaultReady when zero).
	Ready time.Duration
	// LogBytes is how much of the process output is kept (the tail);
	// 1 MiB when zero.
	LogBytes int
	// Binary is the natter to run; empty means Binary(): $NATTER_TEST_BIN
	// or ./cmd/natter built once.
	Binary string
	// PostgresURL is a PostgreSQL superuser URL. When set, the node gets
	// a database of its own on that server, kept across restarts and
	// dropped by Close, and its store lives there (see the package doc).
	// Start fills it from $NATTER_TEST_POSTGRES_URL.
	PostgresURL string
	// CassandraHosts are Cassandra contact points (comma-separated). With
	// PostgresURL, the node's messages live in a keyspace of its own,
	// dropped by Close (see the package doc). Start fills it from
	// $NATTER_TEST_CASSANDRA_HOSTS.
	CassandraHosts string
}

// TB is the part of testing.TB that Start and the cleanups use; the
// package does not import testing, so programs can use Launch.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
	Cleanup(func())
	TempDir() string
	Failed() bool
}

// Node is one natter process and the data directory it keeps across
// restarts. Its methods are safe for concurrent use.
type Node struct {
	bin      string
	addr     string // host:port of the gateway
	natsAddr string // host:port of NATS, empty without Options.NATS
	data     string
	ownsData bool      // data is a temporary directory Close removes
	db       *database // the node's PostgreSQL database, nil for SQLite
	ks       *keyspace // the node's Cassandra keyspace, nil without
	args     []string
	ready    time.Duration
	log      *tailBuffer

	mu     sync.Mutex
	fsize  int64 // RLIMIT_FSIZE of the next start, 0 for none
	cmd    *exec.Cmd
	exited chan struct{} // closed once cmd has been waited for
	state  *os.ProcessState
	starts int
	closed bool
}

// Start builds natter if needed, starts a node (Launch) and waits until
// /healthz answers 200, failing the test otherwise. The node runs on a
// tb.TempDir() unless opts.DataDir is set, and on a PostgreSQL database
// of its own when $NATTER_TEST_POSTGRES_URL is set. It is closed when the
// test ends, and its log tail printed if the test failed.
func Start(tb TB, opts Options) *Node {
	tb.Helper()
	if opts.DataDir == "" {
		opts.DataDir = tb.TempDir()
	}
	if opts.PostgresURL == "" {
		opts.PostgresURL = os.Getenv(PostgresEnv)
	}
	if opts.CassandraHosts == "" {
		opts.CassandraHosts = os.Getenv(CassandraEnv)
	}
	ready := opts.Ready
	if ready <= 0 {
		ready = DefaultReady
	}
	ctx, cancel := context.WithTimeout(context.Background(), ready)
	defer cancel()
	n, err := Launch(ctx, opts)
	if err != nil {
		tb.Fatalf("testnode: %v", err)
	}
	tb.Cleanup(func() {
		if err := n.Close(); err != nil {
			tb.Logf("testnode: %v", err)
		}
		if tb.Failed() {
			tb.Logf("natter log tail (%s):\n%s", n.addr, n.Log())
		}
	})
	return n
}

// Launch starts a node and waits until /healthz answers 200, within ctx
// and opts.Ready. The caller must Close the node. On an error nothing is
// left running or behind, and the error carries the log tail.
func Launch(ctx context.Context, opts Options) (*Node, error) {
	n := &Node{bin: opts.Binary, data: opts.DataDir, ready: opts.Ready, log: newTailBuffer(opts.LogBytes)}
	if err := n.setup(ctx, opts); err != nil {
		_ = n.Close()
		return nil, err
	}
	return n, nil
}

// setup prepares the node's binary, directory, addresses, database and
// arguments, and starts it.
func (n *Node) setup(ctx context.Context, opts Options) (err error) {
	if n.ready <= 0 {
		n.ready = DefaultReady
	}
	if n.bin == "" {
		if n.bin, err = Binary(); err != nil {
			return err
		}
	}
	if n.data == "" {
		if n.data, err = os.MkdirTemp("", "natter-testnode-data-"); err != nil {
			return fmt.Errorf("make a data directory: %w", err)
		}
		n.ownsData = true
	}
	if opts.CassandraHosts != "" && opts.PostgresURL == "" {
		return fmt.Errorf("cassandra hosts without a PostgreSQL URL: cassandra+postgres needs both (%s)", PostgresEnv)
	}
	if opts.PostgresURL != "" {
		if n.db, err = createDatabase(ctx, opts.PostgresURL); err != nil {
			return err
		}
	}
	if opts.CassandraHosts != "" {
		if n.ks, err = newKeyspace(opts.CassandraHosts); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, n.ready)
	defer cancel()
	// A port found free can be taken by another test's node before this
	// one binds it; then natter exits naming the address, and the node
	// tries fresh ports (a restart keeps its ports and does not retry).
	for attempt := 1; ; attempt++ {
		if err := n.pickAddrs(opts); err != nil {
			return err
		}
		err := n.launch(ctx)
		if err == nil {
			return nil
		}
		if attempt == 3 || n.Running() || !strings.Contains(n.Log(), "address already in use") || ctx.Err() != nil {
			return fmt.Errorf("%w\n%s", err, n.Log())
		}
		n.mu.Lock()
		n.starts-- // a start that never bound its port is not one
		n.mu.Unlock()
	}
}

// pickAddrs chooses free ports and builds the arguments around them.
func (n *Node) pickAddrs(opts Options) (err error) {
	if n.addr, err = freeAddr(); err != nil {
		return err
	}
	n.args = []string{"serve", "--http", n.addr, "--data", n.data}
	if opts.NATS {
		if n.natsAddr, err = freeAddr(); err != nil {
			return err
		}
		n.args = append(n.args, "--nats-listen", n.natsAddr)
	}
	if !opts.RateLimit && !hasFlag(opts.Flags, "--rate-limit") {
		n.args = append(n.args, "--rate-limit", "off")
	}
	switch {
	case n.ks != nil:
		n.args = append(n.args, cassandraFlags(n.db.url, n.ks)...)
	case n.db != nil:
		n.args = append(n.args, postgresFlags(n.db.url)...)
	}
	n.args = append(n.args, opts.Flags...)
	return nil
}

// Close kills the process if it runs, drops the node's database and
// removes the data directory Launch made. Safe to call twice.
func (n *Node) Close() error {
	n.mu.Lock()
	closed := n.closed
	n.closed = true
	n.mu.Unlock()
	if closed {
		return nil
	}
	var errs []error
	if n.Running() {
		errs = append(errs, n.Kill9())
	}
	if n.db != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		errs = append(errs, n.db.drop(ctx))
		cancel()
	}
	if n.ks != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		errs = append(errs, n.ks.drop(ctx))
		cancel()
	}
	if n.ownsData {
		if err := os.RemoveAll(n.data); err != nil {
			errs = append(errs, fmt.Errorf("remove the data directory: %w", err))
		}
	}
	return errors.Join(errs...)
}

// freeAddr is FreeAddr; a test replaces it to hand out a taken port.
var freeAddr = FreeAddr

// FreeAddr returns a loopback host:port that was free a moment ago.
func FreeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func hasFlag(flags []string, name string) bool {
	for _, f := range flags {
		if f == name || strings.HasPrefix(f, name+"=") || f == "-"+strings.TrimPrefix(name, "--") {
			return true
		}
	}
	return false
}

// Addr is the gateway's host:port; it stays the same across restarts.
func (n *Node) Addr() string { return n.addr }

// URL is the gateway's base URL, http://host:port.
func (n *Node) URL() string { return "http://" + n.addr }

// NATSURL is the embedded NATS server's URL, empty without Options.NATS.
// It carries the operator credentials that the node keeps in its data
// directory (none for a node started with --nats-insecure).
func (n *Node) NATSURL() string {
	if n.natsAddr == "" {
		return ""
	}
	if op, err := natsnode.ReadOperator(n.data); err == nil {
		return "nats://" + url.UserPassword(op.User, op.Password).String() + "@" + n.natsAddr
	}
	return "nats://" + n.natsAddr
}

// DataDir is the node's state directory.
func (n *Node) DataDir() string { return n.data }

// Log returns the tail of the process output, across restarts.
func (n *Node) Log() string { return n.log.String() }

// Starts counts the times the process was started.
func (n *Node) Starts() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.starts
}

// Client returns a REST client of this node.
func (n *Node) Client() *Client { return NewClient(n.URL(), ClientOptions{}) }

// SetFileSizeLimit caps, from the next start on, every file the process
// writes at bytes (RLIMIT_FSIZE through prlimit(1), so the pid stays
// natter's): a write past it fails with EFBIG, as a write to a full disk
// fails with ENOSPC. 0 removes the cap.
func (n *Node) SetFileSizeLimit(bytes int64) {
	n.mu.Lock()
	n.fsize = bytes
	n.mu.Unlock()
}

// launch starts the process and waits for /healthz within ctx.
func (n *Node) launch(ctx context.Context) error {
	n.mu.Lock()
	fsize := n.fsize
	n.mu.Unlock()
	cmd := exec.Command(n.bin, n.args...)
	if fsize > 0 {
		cmd = exec.Command("prlimit", append([]string{fmt.Sprintf("--fsize=%d", fsize), n.bin}, n.args...)...)
	}
	fmt.Fprintf(n.log, "--- %s natter %s\n", time.Now().Format("15:04:05.000"), strings.Join(n.args, " "))
	cmd.Stdout, cmd.Stderr = n.log, n.log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start natter: %w", err)
	}
	exited := make(chan struct{})
	n.mu.Lock()
	n.cmd, n.exited, n.state = cmd, exited, nil
	n.starts++
	n.mu.Unlock()
	go func() {
		_ = cmd.Wait()
		n.mu.Lock()
		n.state = cmd.ProcessState
		n.mu.Unlock()
		close(exited)
	}()
	return n.WaitHealthy(ctx)
}

// WaitHealthy polls /healthz until it answers 200, the process exits or
// ctx ends.
func (n *Node) WaitHealthy(ctx context.Context) error {
	n.mu.Lock()
	exited, pid := n.exited, n.cmd.Process.Pid
	n.mu.Unlock()
	client := &http.Client{Timeout: 2 * time.Second}
	var last error
	for {
		select {
		case <-exited:
			return fmt.Errorf("natter exited before it was healthy: %v", n.ExitState())
		default:
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, n.URL()+"/healthz", nil)
		res, err := client.Do(req)
		if err == nil {
			res.Body.Close()
			mine, perr := listensOn(pid, n.addr)
			switch {
			case perr != nil:
				err = fmt.Errorf("who listens on %s: %w", n.addr, perr)
			case !mine:
				// Another node took the port first; this one will exit.
				err = fmt.Errorf("%s answers, but not from natter pid %d", n.addr, pid)
			case res.StatusCode == http.StatusOK:
				return nil
			default:
				err = fmt.Errorf("status %d", res.StatusCode)
			}
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("natter not healthy: %w (last answer: %v)", ctx.Err(), last)
		case <-exited:
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// ExitState is how the last process ended, nil while it runs.
func (n *Node) ExitState() *os.ProcessState {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.state
}

// Running reports whether the process is alive.
func (n *Node) Running() bool {
	n.mu.Lock()
	exited := n.exited
	n.mu.Unlock()
	if exited == nil {
		return false
	}
	select {
	case <-exited:
		return false
	default:
		return true
	}
}

// Exited returns a channel closed when the current process has exited.
func (n *Node) Exited() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.exited
}

// Pid is the current process's id.
func (n *Node) Pid() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cmd.Process.Pid
}

// Kill9 kills the process with SIGKILL and waits until it is gone.
func (n *Node) Kill9() error {
	return n.stop(context.Background(), syscall.SIGKILL, 30*time.Second)
}

// Term sends SIGTERM and waits for the process to exit within ctx; it
// returns an error if the exit status is not 0.
func (n *Node) Term(ctx context.Context) error {
	if err := n.stop(ctx, syscall.SIGTERM, 0); err != nil {
		return err
	}
	if st := n.ExitState(); st != nil && !st.Success() {
		return fmt.Errorf("natter exited with %v after SIGTERM", st)
	}
	return nil
}

// Signal sends sig to the process without waiting; Exited tells when it
// is gone.
func (n *Node) Signal(sig os.Signal) error {
	n.mu.Lock()
	cmd := n.cmd
	n.mu.Unlock()
	if cmd == nil {
		return errors.New("natter was never started")
	}
	if err := cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signal natter: %w", err)
	}
	return nil
}

func (n *Node) stop(ctx context.Context, sig syscall.Signal, bound time.Duration) error {
	n.mu.Lock()
	exited := n.exited
	n.mu.Unlock()
	if err := n.Signal(sig); err != nil {
		return err
	}
	if bound > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, bound)
		defer cancel()
	}
	select {
	case <-exited:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("natter still running after %v: %w", sig, ctx.Err())
	}
}

// Restart starts the process again on the same address and data
// directory, after Kill9 or Term, and waits for /healthz within ctx (and
// Options.Ready).
func (n *Node) Restart(ctx context.Context) error {
	if n.Running() {
		return errors.New("restart: natter is still running")
	}
	ctx, cancel := context.WithTimeout(ctx, n.ready)
	defer cancel()
	return n.launch(ctx)
}

// RSS is the process's resident set size in bytes.
func (n *Node) RSS() (int64, error) { return ProcessRSS(n.Pid()) }

// ProcessRSS reads VmRSS from /proc/PID/status, in bytes (Linux only).
func ProcessRSS(pid int) (int64, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, fmt.Errorf("read process status: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) >= 2 && f[0] == "VmRSS:" {
			kib, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("parse VmRSS %q: %w", f[1], err)
			}
			return kib << 10, nil
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu      sync.Mutex
	max     int
	b       []byte
	dropped int
}

func newTailBuffer(max int) *tailBuffer {
	if max <= 0 {
		max = 1 << 20
	}
	return &tailBuffer{max: max}
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.dropped += over
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.dropped > 0 {
		return fmt.Sprintf("(%d earlier bytes dropped)\n%s", t.dropped, t.b)
	}
	return string(t.b)
}
