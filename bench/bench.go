// Package bench is `natter bench SCENARIO`: it drives a natter over real
// WebSockets, the way clients do, and reports throughput, latency
// percentiles, lost and duplicated deliveries, errors by code and the
// server's CPU and memory. It runs against the server at --url, or starts
// one with --spawn. The raw-* scenarios measure the same machine without
// natter: JetStream alone and a bare WebSocket echo, the ceilings natter
// sits under.
//
// Sends are open-loop: each is due at a fixed time whatever happened to
// the previous ones, and latency counts from that time (see Schedule).
package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

// Config is every setting of a bench run; the flags fill it.
type Config struct {
	URL       string // natter's base URL when not spawning
	Spawn     bool   // start a natter instead
	NatterBin string // binary to spawn; empty: this executable
	Fsync     string // passed to a spawned natter
	PID       int    // natter's pid when not spawned, for CPU and RSS without metrics
	// MetricsURL is natter's /metrics when not spawned (default: --url's
	// /metrics); the server's CPU, RSS and counters come from there.
	MetricsURL string
	NATSURL    string // natter's NATS when not spawned, for presence KV writes
	Presence   bool   // idle: time presence changes, count presence KV writes

	Pairs    int           // pairs, catchup: sender/recipient pairs
	Rate     float64       // pairs: messages per second per sender
	Size     int           // content bytes per message (at least 8: raw scenarios stamp it)
	Duration time.Duration // measured time (idle: time held; churn: time churning)
	Warmup   time.Duration // load before measuring
	Drain    time.Duration // longest wait for acks and deliveries after the load
	Conns    int           // idle, churn, raw-ws-echo: connections
	Accounts int           // idle, churn: accounts the connections share
	Events   int           // catchup: events accumulated per offline device
	Groups   int           // group, mix: groups
	Members  int           // group, mix: members per group
	// GroupRate is mix's rate per group sender (0: --rate).
	GroupRate float64
	// ServerArgs are more flags for a spawned natter (--store postgres ...).
	ServerArgs string
	// Nodes is how many natter nodes --spawn starts: more than one form
	// a JetStream cluster over loopback routes, sharing a database on
	// PostgresURL; clients are spread over them.
	Nodes       int
	PostgresURL string

	// Without lists parts of natter's JetStream traffic raw-pipeline
	// leaves out (pipelineParts): what a design without them would cost.
	Without []string

	SourceIPs   int // client source addresses 127.0.0.1..127.0.0.N
	Concurrency int // registrations, logins and dials at a time
	JSON        bool
}

func defaultConfig() Config {
	return Config{
		URL:         "http://127.0.0.1:8080",
		Fsync:       "interval",
		Pairs:       10,
		Rate:        10,
		Size:        100,
		Duration:    30 * time.Second,
		Warmup:      5 * time.Second,
		Drain:       10 * time.Second,
		Conns:       100,
		Accounts:    100,
		Events:      10000,
		Groups:      1,
		Members:     20,
		SourceIPs:   1,
		Concurrency: 32,
		Nodes:       1,
	}
}

func (c *Config) register(fs *flag.FlagSet) {
	fs.StringVar(&c.URL, "url", c.URL, "base URL of the natter to measure")
	fs.BoolVar(&c.Spawn, "spawn", c.Spawn, "start a natter with a temporary data directory instead of using --url")
	fs.StringVar(&c.NatterBin, "natter-bin", c.NatterBin, "natter binary for --spawn (default: this executable)")
	fs.StringVar(&c.Fsync, "fsync", c.Fsync, `--fsync of a spawned natter and of raw-jetstream: "always" or "interval"`)
	fs.IntVar(&c.PID, "pid", c.PID, "pid of the natter at --url, for its CPU and RSS from /proc when its metrics cannot be read (Linux)")
	fs.StringVar(&c.MetricsURL, "metrics-url", c.MetricsURL, "Prometheus /metrics of the natter at --url (its --admin-http address, if set); default: --url's /metrics")
	fs.BoolVar(&c.Presence, "presence", c.Presence, "idle: watch every account's presence (how long connects and disconnects take to show) and count the presence bucket's KV writes (a spawned natter exposes its NATS for it)")
	fs.StringVar(&c.NATSURL, "nats-url", c.NATSURL, "NATS of the natter at --url (its --nats-listen, with credentials), for idle's presence KV writes")
	fs.IntVar(&c.Pairs, "pairs", c.Pairs, "pairs, catchup: sender/recipient pairs")
	fs.Float64Var(&c.Rate, "rate", c.Rate, "pairs: messages per second per sender")
	fs.IntVar(&c.Size, "size", c.Size, "content bytes per message")
	fs.DurationVar(&c.Duration, "duration", c.Duration, "measured time (idle: time the connections are held)")
	fs.DurationVar(&c.Warmup, "warmup", c.Warmup, "load before measuring")
	fs.DurationVar(&c.Drain, "drain", c.Drain, "longest wait for outstanding acks and deliveries after the load")
	fs.IntVar(&c.Conns, "conns", c.Conns, "idle, churn, raw-ws-echo: connections")
	fs.IntVar(&c.Accounts, "accounts", c.Accounts, "idle, churn: accounts the connections are spread over (each logs in once)")
	fs.IntVar(&c.Events, "events", c.Events, "catchup: events accumulated per offline device")
	fs.IntVar(&c.Groups, "groups", c.Groups, "group: groups, each with one sender at --rate")
	fs.IntVar(&c.Members, "members", c.Members, "group: members per group (at most 500)")
	fs.Float64Var(&c.GroupRate, "group-rate", c.GroupRate, "mix: messages per second per group sender (default: --rate)")
	fs.StringVar(&c.ServerArgs, "server-args", c.ServerArgs, `more flags for a --spawn natter, space-separated (e.g. "--store postgres --postgres-url URL --fanout-queue-threshold 0")`)
	fs.IntVar(&c.Nodes, "nodes", c.Nodes, "with --spawn: natter nodes to start; more than one form a NATS JetStream cluster on --postgres-url, and account i connects to node i mod N (both ends of a pair on different nodes)")
	fs.StringVar(&c.PostgresURL, "postgres-url", c.PostgresURL, "with --spawn: a PostgreSQL server for the spawned node's store, or the one the nodes share with --nodes above 1 (a database is created on it and dropped after)")
	fs.Func("without", "raw-pipeline: leave out a part of natter's traffic a message, to price a design without it ("+strings.Join(pipelineParts, ", ")+"); repeat or comma-separate", func(v string) error {
		for _, p := range strings.Split(v, ",") {
			if !slices.Contains(pipelineParts, p) {
				return fmt.Errorf("unknown part %q: one of %s", p, strings.Join(pipelineParts, ", "))
			}
			c.Without = append(c.Without, p)
		}
		return nil
	})
	fs.IntVar(&c.SourceIPs, "source-ips", c.SourceIPs, "spread connections over source addresses 127.0.0.1..127.0.0.N, about 28k each (loopback targets only)")
	fs.IntVar(&c.Concurrency, "concurrency", c.Concurrency, "registrations, logins and dials at a time")
	fs.BoolVar(&c.JSON, "json", c.JSON, "print the report as one JSON object")
}

func (c Config) validate() error {
	var errs []error
	check := func(ok bool, msg string) {
		if !ok {
			errs = append(errs, errors.New(msg))
		}
	}
	u, err := url.Parse(c.URL)
	check(err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "", "--url must be an http(s) URL")
	check(c.Fsync == "always" || c.Fsync == "interval", `--fsync must be "always" or "interval"`)
	check(c.PID >= 0, "--pid must not be negative")
	check(c.Nodes >= 1, "--nodes must be at least 1")
	check(c.Nodes == 1 || c.Spawn, "--nodes above 1 needs --spawn (the bench starts the cluster)")
	check(c.Nodes == 1 || c.PostgresURL != "", "--nodes above 1 needs --postgres-url: a cluster's nodes share their store")
	if c.MetricsURL != "" {
		m, err := url.Parse(c.MetricsURL)
		check(err == nil && (m.Scheme == "http" || m.Scheme == "https") && m.Host != "", "--metrics-url must be an http(s) URL")
	}
	check(c.Pairs >= 1, "--pairs must be at least 1")
	check(c.Rate > 0, "--rate must be positive")
	check(c.GroupRate >= 0, "--group-rate must not be negative")
	check(c.Size >= 8 && c.Size <= 65536, "--size must be 8 to 65536 bytes")
	check(c.Duration > 0, "--duration must be positive")
	check(c.Warmup >= 0 && c.Drain >= 0, "--warmup and --drain must not be negative")
	check(c.Conns >= 1, "--conns must be at least 1")
	check(c.Accounts >= 0, "--accounts must not be negative")
	check(c.Events >= 1, "--events must be at least 1")
	check(c.Groups >= 1, "--groups must be at least 1")
	check(c.Members >= 2 && c.Members <= 500, "--members must be 2 to 500")
	check(c.SourceIPs >= 1 && c.SourceIPs <= 254, "--source-ips must be 1 to 254")
	check(c.Concurrency >= 1, "--concurrency must be at least 1")
	return errors.Join(errs...)
}

// scenario is one kind of run. To add one (group, once natter has groups),
// write its run function, usually setting up accounts and connections and
// handing senders to runLoad, and list it in scenarios.
type scenario struct {
	name    string
	summary string
	server  bool // needs a natter: --spawn or --url
	run     func(ctx context.Context, e *env) (*Report, error)
}

var scenarios = []scenario{
	{"pairs", "--pairs one-to-one pairs, each sender at --rate msg/s (open loop)", true, runPairs},
	{"group", "--groups groups of --members members, one sender per group at --rate msg/s (open loop)", true, runGroup},
	{"mix", "--pairs 1:1 pairs at --rate msg/s each and --groups groups of --members at --group-rate, at once: delivery latency of each apart", true, runMix},
	{"idle", "--conns idle connections with heartbeats: server RSS per connection, CPU at idle", true, runIdle},
	{"catchup", "--pairs devices offline while --events messages accumulate; time from reconnect to synced", true, runCatchup},
	{"churn", "--conns clients connecting and disconnecting in a loop: connects/s", true, runChurn},
	{"raw-jetstream", "embedded JetStream on file storage, async publish: the ceiling under natter's sends", false, runRawJetStream},
	{"raw-pipeline", "--pairs at --rate: natter's JetStream traffic per 1:1 message without natter (embedded, in-process): the floor under natter's sends and deliveries", false, runRawPipeline},
	{"raw-ws-echo", "bare WebSocket echo with --conns clients: the ceiling under natter's connections", false, runRawWSEcho},
}

// Main runs `natter bench` with args (the scenario and flags, without
// "bench"). It prints the report to stdout and progress and logs to stderr.
// It returns flag.ErrHelp after printing usage for -h, and an error when the
// run failed or saw lost or duplicated messages (after the report).
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, sc, err := parseArgs(args, stderr)
	if err != nil {
		return err
	}
	// The progress line and the logs write from different goroutines.
	stderr = &lockedWriter{w: stderr}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	raiseFileLimit(log, cfg)

	e := &env{cfg: cfg, log: log, stderr: stderr, runID: newRunID(), errs: &ErrorCounts{Log: log}}
	if sc.server {
		t, err := openTarget(ctx, cfg, log)
		if err != nil {
			return fmt.Errorf("bench %s: %w", sc.name, err)
		}
		defer t.Close()
		e.target = t
		e.api = newAPI(t.first(), cfg.Concurrency, e.errs)
		e.dial = newDialer(ctx, t.bases, cfg.SourceIPs, e.errs)
	}
	rep, err := sc.run(ctx, e)
	if err != nil {
		return fmt.Errorf("bench %s: %w", sc.name, err)
	}
	if cfg.JSON {
		err = rep.WriteJSON(stdout)
	} else {
		err = rep.WriteTable(stdout)
	}
	if err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	if err := rep.Problem(); err != nil {
		return fmt.Errorf("bench %s: %w", sc.name, err)
	}
	return nil
}

// parseArgs reads the scenario and the flags, which may come before it,
// after it or both.
func parseArgs(args []string, stderr io.Writer) (Config, scenario, error) {
	cfg := defaultConfig()
	fs := flag.NewFlagSet("natter bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg.register(fs)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: natter bench SCENARIO [flags]\n\nscenarios:\n")
		for _, s := range scenarios {
			fmt.Fprintf(stderr, "  %-14s %s\n", s.name, s.summary)
		}
		fmt.Fprintf(stderr, "\nflags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return cfg, scenario{}, err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return cfg, scenario{}, errors.New("bench: name a scenario")
	}
	name := fs.Arg(0)
	if err := fs.Parse(fs.Args()[1:]); err != nil {
		return cfg, scenario{}, err
	}
	if fs.NArg() > 0 {
		return cfg, scenario{}, fmt.Errorf("bench: unexpected arguments %q", fs.Args())
	}
	var sc scenario
	for _, s := range scenarios {
		if s.name == name {
			sc = s
		}
	}
	switch {
	case sc.name == "":
		names := make([]string, len(scenarios))
		for i, s := range scenarios {
			names[i] = s.name
		}
		return cfg, sc, fmt.Errorf("bench: unknown scenario %q (want one of %s)", name, strings.Join(names, ", "))
	case sc.run == nil:
		return cfg, sc, fmt.Errorf("bench: scenario %s is not implemented yet", name)
	}
	if err := cfg.validate(); err != nil {
		return cfg, sc, fmt.Errorf("bench: %w", err)
	}
	return cfg, sc, nil
}

// env is what a scenario run works with.
type env struct {
	cfg    Config
	log    *slog.Logger
	stderr io.Writer
	runID  string // in usernames and client_message_ids
	errs   *ErrorCounts

	// set for scenarios that need a natter
	target *target
	api    *api
	dial   *dialer
}

// progress starts a progress line on stderr; call the result to end it.
func (e *env) progress(ctx context.Context, line func(elapsed time.Duration) string) (stop func()) {
	return startProgress(ctx, e.stderr, progressEvery, line)
}

// serverPIDs are natter's pids (one per node), none when unknown.
func (e *env) serverPIDs() []int {
	if e.target == nil {
		return nil
	}
	return e.target.pids
}

// newReport starts the report of a scenario run against e's target.
func (e *env) newReport(name string, params map[string]any) *Report {
	if e.cfg.Nodes > 1 {
		params["nodes"] = e.cfg.Nodes
	}
	r := &Report{Scenario: name, Params: params, Started: time.Now()}
	if e.target != nil {
		r.Target = e.target.first().String()
	}
	return r
}

// noteErrorFrames is a frame handler that counts error frames only.
func (e *env) noteErrorFrames(f *inbound, _ time.Time) {
	if f.Type == "error" {
		e.errs.Note(f.Code, f.Message)
	}
}

// watchSelf samples the bench's own process.
func (e *env) watchSelf() *procWatch { return newProcWatch(e.log, os.Getpid()) }

// lockedWriter serializes writes to w.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
