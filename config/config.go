// Package config holds natter's settings: plain structs with documented
// defaults and Validate. cmd/natter fills them from flags, NATTER_*
// environment variables and an optional config file.
package config

import (
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"
)

// Fsync modes.
const (
	FsyncAlways   = "always"
	FsyncInterval = "interval"
)

// Stores natter can keep its records in. The cassandra+ ones keep
// conversations, messages and receipts in Cassandra and users, devices
// and blocks in the second.
const (
	StoreSQLite            = "sqlite"
	StorePostgres          = "postgres"
	StoreCassandraSQLite   = "cassandra+sqlite"
	StoreCassandraPostgres = "cassandra+postgres"
)

// Server is everything `natter serve` needs.
type Server struct {
	// HTTPAddr is where the gateway listens (REST, WebSocket, long-poll).
	HTTPAddr string
	// DataDir holds the JetStream store, the embedded database and the
	// token signing key.
	DataDir string
	// NATSListen exposes the embedded NATS server to NATS tools when set
	// (host:port); empty keeps it in-process only.
	NATSListen string
	// NATSInsecure turns the NATS listener's authentication off; without
	// it NATS tools log in with the operator credentials that natter
	// keeps in DataDir/keys/nats-operator.password.
	NATSInsecure bool

	// Store is "sqlite" (the default: DataDir/natter.db), "postgres" (the
	// database at PostgresURL), or "cassandra+sqlite" / "cassandra+postgres"
	// (messages in Cassandra at CassandraHosts, users in the second).
	Store string
	// PostgresURL is the --store postgres database, a postgres:// URL or a
	// key=value DSN. It may hold a password, so it is never logged or
	// quoted in errors.
	PostgresURL string

	// Fsync is "always" (JetStream and the store sync every write before
	// it is acknowledged) or "interval" (they sync every SyncInterval).
	Fsync        string
	SyncInterval time.Duration

	// RateLimit turns every rate limit on or off.
	RateLimit bool
	// SendBurst and SendRate limit sends per user.
	SendBurst int
	SendRate  float64
	// AuthBurst and AuthRate limit login and register per client address.
	AuthBurst int
	AuthRate  float64

	// MaxConnsPerAddr caps concurrent HTTP and WebSocket connections from
	// one client IP address (0: no cap; --rate-limit off lifts it too).
	// Behind a reverse proxy every client has the proxy's address: raise
	// it there, or cap at the proxy.
	MaxConnsPerAddr int
	// MaxWSPerUser and MaxPollsPerUser cap one user's open WebSockets and
	// concurrent long-polls, from any address (0: no cap; --rate-limit
	// off lifts them too).
	MaxWSPerUser    int
	MaxPollsPerUser int
	// MaxConns caps all client connections; 0 means as many as
	// RLIMIT_NOFILE allows after the descriptor reserve (the larger of
	// 256 and 10 %), which a larger value cannot exceed either.
	MaxConns int
	// BodyTimeout bounds the reading of a request body.
	BodyTimeout time.Duration
	// IdleTimeout closes a keep-alive connection idle for that long.
	IdleTimeout time.Duration
	// WriteTimeout bounds writing an answer, counted from the end of its
	// request's headers; it must exceed a long-poll's 60 s. WebSockets
	// are not subject to it.
	WriteTimeout time.Duration

	// AllowedOrigins are the browser origins, besides the server's own,
	// allowed to open a WebSocket.
	AllowedOrigins []string

	// InboxRetention is how far back a device can resume with a cursor.
	InboxRetention time.Duration
	// ConvRetention is how long the CONV stream keeps messages after the
	// store has them (it must exceed the consumers' worst lag).
	ConvRetention time.Duration
	// StreamMaxBytes caps each stream; -1 is unlimited. A full stream
	// refuses sends (503) rather than drop acknowledged messages.
	StreamMaxBytes int64
	// DuplicateWindow is JetStream's dedupe window. Retries after it are
	// still answered from the store.
	DuplicateWindow time.Duration

	// AccessTokenTTL is the lifetime of an access token.
	AccessTokenTTL time.Duration
	// ReadLimit caps a WebSocket frame and a request body.
	ReadLimit int64
	// Heartbeat is the interval of server pings; a silent connection is
	// dropped after PresenceTimeout plus one heartbeat.
	Heartbeat time.Duration
	// PresenceTimeout is how long a connection may stay silent, on top of
	// one heartbeat, before it is dropped and its user shows offline; a
	// long-polling device stays online as long after its last poll.
	PresenceTimeout time.Duration
	// PresenceLease is the TTL of a node's presence lease: a crashed
	// node's users show offline within it.
	PresenceLease time.Duration
	// MaxPresenceSubscriptions caps the users one connection watches.
	MaxPresenceSubscriptions int
	// SendQueue is each connection's outgoing queue, in frames; a client
	// that lets it fill is disconnected (4029).
	SendQueue int

	// MaxDeliver is how often a consumer tries an event before it goes to
	// the dead-letter stream.
	MaxDeliver int
	// MaxAckPending bounds each consumer's in-flight events.
	MaxAckPending int
	// FanoutQueueThreshold is the least members of a group whose
	// messages fan out through the work queue (0: none do);
	// FanoutPartitions is how many partitions (and workers) it has.
	FanoutQueueThreshold int
	FanoutPartitions     int

	// Single-node switches: what a cluster flips.
	//
	// StreamReplicas is the replica count of every stream and bucket
	// (--replicas): 0 means the cluster's size up to 3, so 1 on a single
	// node.
	StreamReplicas int
	// SoleSequencer says this process sequences every message (one
	// gateway): it may then skip the store's dedupe read for client
	// message ids it has surely never seen. Off on a cluster.
	SoleSequencer bool
	// AckWait is how long a consumer's delivery may stay unacknowledged
	// before JetStream redelivers it.
	AckWait time.Duration
	// ResetOnStart redelivers at once what a killed predecessor had in
	// flight. Only when this process is the only one consuming.
	ResetOnStart bool

	// LogLevel is debug, info, warn or error.
	LogLevel string
	// LogFormat is text (key=value) or json (one object a line).
	LogFormat string
	// Pprof serves /debug/pprof on the HTTP address (on AdminHTTP when set).
	Pprof bool
	// Metrics serves Prometheus' /metrics (default on).
	Metrics bool
	// Web serves the web app at / (default on).
	Web bool
	// AdminHTTP, when set, is a separate address for /metrics and pprof
	// (and /healthz, /readyz, which the main address keeps answering).
	AdminHTTP string

	// CassandraHosts are the contact points (host or host:port) of the
	// Cassandra cluster of a cassandra+ store.
	CassandraHosts []string
	// CassandraKeyspace holds natter's tables; created (one replica) when
	// missing, so production keyspaces are created by operators first.
	CassandraKeyspace string
	// CassandraConsistency of every read and write, default LOCAL_QUORUM.
	CassandraConsistency string

	// Push: notifications to offline phones (config/push.go).
	Push Push
	// Cluster: NATS cluster mode (config/cluster.go).
	Cluster Cluster

	// DrainTimeout bounds a graceful drain on SIGTERM: how long clients
	// get to finish their requests and close after their 1001; 0 closes
	// at once (docs/operations.md, "Rolling restart").
	DrainTimeout time.Duration
}

// Default returns the documented defaults.
func Default() Server {
	return Server{
		HTTPAddr:        "127.0.0.1:8080",
		DataDir:         "natter-data",
		Store:           StoreSQLite,
		Fsync:           FsyncInterval,
		SyncInterval:    time.Second,
		RateLimit:       true,
		Metrics:         true,
		Web:             true,
		SendBurst:       100,
		SendRate:        20,
		AuthBurst:       20,
		AuthRate:        1,
		MaxConnsPerAddr: 64,
		MaxWSPerUser:    20,
		MaxPollsPerUser: 5,
		BodyTimeout:     30 * time.Second,
		IdleTimeout:     60 * time.Second,
		WriteTimeout:    90 * time.Second,
		InboxRetention:  30 * 24 * time.Hour,
		ConvRetention:   7 * 24 * time.Hour,
		StreamMaxBytes:  -1,
		DuplicateWindow: 2 * time.Minute,
		AccessTokenTTL:  time.Hour,
		ReadLimit:       1 << 20,
		Heartbeat:       25 * time.Second,
		SendQueue:       64,
		MaxDeliver:      8,
		MaxAckPending:   10000,

		// Off: on one node the queue did not measurably help (docs/benchmarks.md section 16).
		FanoutQueueThreshold: 0,
		FanoutPartitions:     4,
		SoleSequencer:        true,
		AckWait:              30 * time.Second,
		ResetOnStart:         true,
		LogLevel:             "info",
		LogFormat:            "text",

		PresenceTimeout:          30 * time.Second,
		PresenceLease:            15 * time.Second,
		MaxPresenceSubscriptions: 500,

		CassandraKeyspace:    "natter",
		CassandraConsistency: "LOCAL_QUORUM",

		Push: DefaultPush(),

		DrainTimeout: 30 * time.Second,
	}
}

// RegisterFlags binds every field to a flag of fs, with c's values as
// defaults.
func (c *Server) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.HTTPAddr, "http", c.HTTPAddr, "address of the HTTP and WebSocket gateway")
	fs.StringVar(&c.DataDir, "data", c.DataDir, "directory for all state (JetStream, database, signing key)")
	fs.StringVar(&c.NATSListen, "nats-listen", c.NATSListen, "expose the embedded NATS server on this host:port (off when empty); clients log in with the operator credentials in --data/keys/nats-operator.password")
	fs.BoolVar(&c.NATSInsecure, "nats-insecure", c.NATSInsecure, "turn off the NATS listener's authentication (anyone reaching --nats-listen gets every right)")
	fs.StringVar(&c.Store, "store", c.Store, `where records live: "sqlite" (a file in --data), "postgres" (--postgres-url), or "cassandra+sqlite" / "cassandra+postgres" (messages in Cassandra, users in the second)`)
	fs.StringVar(&c.PostgresURL, "postgres-url", c.PostgresURL, "PostgreSQL database for --store postgres (postgres://user:password@host:port/db)")
	fs.StringVar(&c.Fsync, "fsync", c.Fsync, `"always": sync each write before acking; "interval": sync every --sync-interval`)
	fs.DurationVar(&c.SyncInterval, "sync-interval", c.SyncInterval, "sync interval in --fsync interval mode")
	fs.Func("rate-limit", `"on" or "off": every rate limit (default on)`, func(s string) error {
		switch s {
		case "on", "true":
			c.RateLimit = true
		case "off", "false":
			c.RateLimit = false
		default:
			return fmt.Errorf("want on or off, got %q", s)
		}
		return nil
	})
	fs.IntVar(&c.SendBurst, "send-burst", c.SendBurst, "sends per user: burst")
	fs.Float64Var(&c.SendRate, "send-rate", c.SendRate, "sends per user: per second")
	fs.IntVar(&c.AuthBurst, "auth-burst", c.AuthBurst, "logins and registrations per client address: burst")
	fs.Float64Var(&c.AuthRate, "auth-rate", c.AuthRate, "logins and registrations per client address: per second")
	fs.IntVar(&c.MaxConnsPerAddr, "max-conns-per-addr", c.MaxConnsPerAddr, "concurrent connections per client IP address; more get 429 (0: no cap; --rate-limit off lifts it too)")
	fs.IntVar(&c.MaxWSPerUser, "max-ws-per-user", c.MaxWSPerUser, "open WebSockets per user; more get 429 on the upgrade (0: no cap; --rate-limit off lifts it too)")
	fs.IntVar(&c.MaxPollsPerUser, "max-polls-per-user", c.MaxPollsPerUser, "concurrent long-polls per user; more get 429 (0: no cap; --rate-limit off lifts it too)")
	fs.IntVar(&c.MaxConns, "max-conns", c.MaxConns, "client connections in all; 0: RLIMIT_NOFILE minus a reserve of max(256, 10%) kept for JetStream and the store")
	fs.DurationVar(&c.BodyTimeout, "http-body-timeout", c.BodyTimeout, "longest time to read a request body")
	fs.DurationVar(&c.IdleTimeout, "http-idle-timeout", c.IdleTimeout, "idle keep-alive connections are closed after this")
	fs.DurationVar(&c.WriteTimeout, "http-write-timeout", c.WriteTimeout, "longest time to answer a request, from the end of its headers (above the 60 s long-poll)")
	fs.Func("allowed-origins", "comma-separated browser origins allowed to open WebSockets and call REST (CORS)", func(s string) error {
		c.AllowedOrigins = nil
		for _, o := range strings.Split(s, ",") {
			if o = strings.TrimSpace(o); o != "" {
				c.AllowedOrigins = append(c.AllowedOrigins, o)
			}
		}
		return nil
	})
	fs.DurationVar(&c.InboxRetention, "inbox-retention", c.InboxRetention, "how long events stay replayable by cursor")
	fs.DurationVar(&c.ConvRetention, "conv-retention", c.ConvRetention, "how long the CONV stream keeps messages")
	fs.Int64Var(&c.StreamMaxBytes, "stream-max-bytes", c.StreamMaxBytes, "cap of each stream in bytes (-1 unlimited); a full stream refuses sends")
	fs.DurationVar(&c.DuplicateWindow, "duplicate-window", c.DuplicateWindow, "JetStream dedupe window (retries after it are answered from the store)")
	fs.DurationVar(&c.AccessTokenTTL, "access-token-ttl", c.AccessTokenTTL, "lifetime of access tokens")
	fs.Int64Var(&c.ReadLimit, "read-limit", c.ReadLimit, "largest WebSocket frame or request body in bytes")
	fs.DurationVar(&c.Heartbeat, "heartbeat", c.Heartbeat, "interval of server pings")
	fs.DurationVar(&c.Heartbeat, "heartbeat-interval", c.Heartbeat, "interval of server pings (the same as --heartbeat)")
	fs.DurationVar(&c.PresenceTimeout, "presence-timeout", c.PresenceTimeout, "a connection silent this long plus one heartbeat is dropped and its user shows offline")
	fs.DurationVar(&c.PresenceLease, "presence-lease", c.PresenceLease, "TTL of this node's presence lease (renewed every third of it): a crashed node's users show offline within it")
	fs.IntVar(&c.MaxPresenceSubscriptions, "max-presence-subscriptions", c.MaxPresenceSubscriptions, "users one connection may watch with presence.subscribe")
	fs.IntVar(&c.SendQueue, "send-queue", c.SendQueue, "frames queued per connection before a slow client is disconnected")
	fs.IntVar(&c.MaxDeliver, "max-deliver", c.MaxDeliver, "tries per event before it goes to the dead-letter stream")
	fs.IntVar(&c.MaxAckPending, "max-ack-pending", c.MaxAckPending, "in-flight events per consumer")
	fs.IntVar(&c.FanoutQueueThreshold, "fanout-queue-threshold", c.FanoutQueueThreshold, "groups of at least this many members fan out through the work queue, e.g. 100 (0: never; default 0, see docs/benchmarks.md section 16)")
	fs.IntVar(&c.FanoutPartitions, "fanout-partitions", c.FanoutPartitions, "partitions (and workers) of the fanout work queue; change it only while the queue is empty")
	fs.IntVar(&c.StreamReplicas, "replicas", c.StreamReplicas, "replicas of every stream and bucket (0: the cluster's size up to 3, 1 on a single node)")
	fs.IntVar(&c.StreamReplicas, "stream-replicas", c.StreamReplicas, "the same as --replicas")
	fs.BoolVar(&c.SoleSequencer, "sole-sequencer", c.SoleSequencer, "this process sequences every message (single node); turn off when several gateways share the streams")
	fs.DurationVar(&c.AckWait, "ack-wait", c.AckWait, "how long a consumer's delivery may stay unacknowledged before it is redelivered")
	fs.BoolVar(&c.ResetOnStart, "reset-on-start", c.ResetOnStart, "redeliver at once what a killed predecessor had in flight (only when this process is the sole consumer)")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "debug, info, warn or error")
	fs.StringVar(&c.LogFormat, "log-format", c.LogFormat, "text or json")
	fs.BoolVar(&c.Pprof, "pprof", c.Pprof, "serve /debug/pprof on the HTTP address (or on --admin-http)")
	fs.BoolVar(&c.Metrics, "metrics", c.Metrics, "serve Prometheus metrics at /metrics (on the HTTP address, or on --admin-http)")
	fs.BoolVar(&c.Web, "web", c.Web, "serve the web app at / (false: the API only)")
	fs.StringVar(&c.AdminHTTP, "admin-http", c.AdminHTTP, "a separate address for /metrics and /debug/pprof, e.g. 127.0.0.1:9090 (/healthz and /readyz answer on both)")
	fs.Func("cassandra-hosts", "comma-separated Cassandra contact points (host or host:port) of a cassandra+ store", func(s string) error {
		c.CassandraHosts = nil
		for _, h := range strings.Split(s, ",") {
			if h = strings.TrimSpace(h); h != "" {
				c.CassandraHosts = append(c.CassandraHosts, h)
			}
		}
		return nil
	})
	fs.StringVar(&c.CassandraKeyspace, "cassandra-keyspace", c.CassandraKeyspace, "Cassandra keyspace of natter's tables")
	fs.StringVar(&c.CassandraConsistency, "cassandra-consistency", c.CassandraConsistency, "consistency of Cassandra reads and writes (LOCAL_QUORUM, QUORUM, ONE, ...)")
	c.Push.RegisterFlags(fs)
	c.Cluster.RegisterFlags(fs)
	fs.DurationVar(&c.DrainTimeout, "drain-timeout", c.DrainTimeout, "on SIGTERM, how long clients get to finish their requests and close after being told to reconnect elsewhere (0: close at once); a second signal closes at once")
}

// Validate reports every invalid setting at once.
func (c Server) Validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	check(c.HTTPAddr != "", "--http is required")
	check(c.DataDir != "", "--data is required")
	check(c.AdminHTTP == "" || c.AdminHTTP != c.HTTPAddr, "--admin-http must differ from --http")
	switch c.Store {
	case StoreSQLite, StorePostgres, StoreCassandraSQLite, StoreCassandraPostgres:
	default:
		errs = append(errs, fmt.Errorf(`--store must be "sqlite", "postgres", "cassandra+sqlite" or "cassandra+postgres", not %q`, c.Store))
	}
	// Never quote the URL: it may hold a password.
	check((c.Store != StorePostgres && c.Store != StoreCassandraPostgres) || c.PostgresURL != "",
		"--store %s needs --postgres-url (or NATTER_POSTGRES_URL)", c.Store)
	if c.Store == StoreCassandraSQLite || c.Store == StoreCassandraPostgres {
		check(len(c.CassandraHosts) > 0, "--store %s needs --cassandra-hosts (or NATTER_CASSANDRA_HOSTS)", c.Store)
		check(c.CassandraKeyspace != "", "--cassandra-keyspace is required")
	}
	check(c.Fsync == FsyncAlways || c.Fsync == FsyncInterval, `--fsync must be "always" or "interval", not %q`, c.Fsync)
	check(c.SyncInterval > 0, "--sync-interval must be positive")
	check(c.SendBurst > 0 && c.SendRate > 0, "--send-burst and --send-rate must be positive")
	check(c.AuthBurst > 0 && c.AuthRate > 0, "--auth-burst and --auth-rate must be positive")
	check(c.MaxConnsPerAddr >= 0 && c.MaxConns >= 0, "--max-conns-per-addr and --max-conns must not be negative")
	check(c.MaxWSPerUser >= 0 && c.MaxPollsPerUser >= 0, "--max-ws-per-user and --max-polls-per-user must not be negative")
	check(c.BodyTimeout >= time.Second, "--http-body-timeout must be at least 1s")
	check(c.IdleTimeout >= time.Second, "--http-idle-timeout must be at least 1s")
	check(c.WriteTimeout > 65*time.Second, "--http-write-timeout must exceed a long-poll's 60s (with room to answer)")
	check(c.InboxRetention >= time.Minute, "--inbox-retention must be at least 1m")
	check(c.ConvRetention >= time.Minute, "--conv-retention must be at least 1m")
	check(c.StreamMaxBytes == -1 || c.StreamMaxBytes >= 1<<20, "--stream-max-bytes must be -1 or at least 1 MiB")
	check(c.DuplicateWindow >= 100*time.Millisecond, "--duplicate-window must be at least 100ms")
	// JetStream refuses a dedupe window longer than the stream's max age.
	check(c.DuplicateWindow <= c.ConvRetention && c.DuplicateWindow <= c.InboxRetention,
		"--duplicate-window must not exceed --conv-retention or --inbox-retention")
	check(c.AccessTokenTTL >= time.Second, "--access-token-ttl must be at least 1s")
	check(c.ReadLimit >= 1<<16+1024, "--read-limit must leave room for a 64 KiB message")
	check(c.Heartbeat >= 100*time.Millisecond, "--heartbeat must be at least 100ms")
	check(c.PresenceTimeout >= 100*time.Millisecond, "--presence-timeout must be at least 100ms")
	check(c.PresenceLease >= time.Second, "--presence-lease must be at least 1s")
	check(c.MaxPresenceSubscriptions >= 1, "--max-presence-subscriptions must be at least 1")
	check(c.SendQueue >= 16, "--send-queue must be at least 16")
	check(c.DrainTimeout >= 0, "--drain-timeout must not be negative")
	check(c.MaxDeliver >= 1, "--max-deliver must be at least 1")
	check(c.MaxAckPending >= 1, "--max-ack-pending must be at least 1")
	check(c.FanoutQueueThreshold >= 0, "--fanout-queue-threshold must not be negative")
	check(c.FanoutPartitions >= 1 && c.FanoutPartitions <= 64, "--fanout-partitions must be between 1 and 64")
	check(c.StreamReplicas >= 0 && c.StreamReplicas <= 5, "--replicas must be between 0 (the cluster's size up to 3) and 5")
	check(c.StreamReplicas <= 1 || c.Cluster.On(), "--replicas above 1 needs a cluster (--nats-cluster or --nats-url)")
	check(c.AckWait >= time.Second, "--ack-wait must be at least 1s")
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("--log-level must be debug, info, warn or error, not %q", c.LogLevel))
	}
	check(c.LogFormat == "text" || c.LogFormat == "json", `--log-format must be "text" or "json", not %q`, c.LogFormat)
	// Every node must see every user and message: a store of its own
	// would not.
	check(!c.Cluster.On() || (c.Store != StoreSQLite && c.Store != StoreCassandraSQLite),
		"cluster mode needs a store every node shares: --store postgres or cassandra+postgres, not %q", c.Store)
	errs = append(errs, c.Push.Validate(), c.Cluster.validate(c.NATSListen))
	return errors.Join(errs...)
}
