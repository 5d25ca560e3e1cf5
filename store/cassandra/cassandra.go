// Package cassandra is natter's message store on Apache Cassandra: the
// message-side roles of store (Conversations, Messages, Receipts), for
// deployments whose history outgrows one machine. Users, devices and
// blocks stay in a relational adapter; store.Combine joins the two.
//
// The tables are in migrations/, embedded and applied by Open. Every
// write is idempotent on its key, so a retry after a timeout (which may
// or may not have been applied) is always safe: messages are keyed by
// (conversation_id, seq), and the fields that must only move forward
// (last message, receipts) are written with a timestamp derived from
// their value, so Cassandra's last-write-wins keeps the highest value
// without a read or a lightweight transaction.
package cassandra

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gocql/gocql"

	"github.com/natter-chat/natter/store"
)

// BucketSize is how many consecutive seqs of a conversation share a
// messages partition (bucket = seq / BucketSize). 1,000 messages of a few
// hundred bytes make partitions of well under a megabyte, far below the
// size where Cassandra's reads and compactions suffer, while a history
// page of 50 crosses at most one bucket boundary. Changing it would move
// stored messages: it is part of the data format.
const BucketSize = 1000

// Options configures Open. The zero value of each field is its default.
type Options struct {
	// Hosts are the contact points, host or host:port (default port 9042).
	Hosts []string
	// Keyspace holds natter's tables; default "natter". Open creates it,
	// with Replication, when it does not exist.
	Keyspace string
	// Replication is the CQL replication map Open creates the keyspace
	// with; default a single replica (SimpleStrategy, factor 1), for a
	// development node. Production keyspaces are created by operators
	// with NetworkTopologyStrategy, and Open leaves them as they are.
	Replication string
	// Consistency of every read and write, default LOCAL_QUORUM.
	Consistency string
	// Timeout of one request, default 10 s: a loaded node queues requests
	// rather than failing them, and a timeout is ErrUnavailable anyway.
	Timeout time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger

	// bucketSize overrides BucketSize in tests, to cross buckets cheaply.
	bucketSize int64
}

// DB is the Cassandra message store. Its methods are safe for concurrent
// use.
type DB struct {
	s          *gocql.Session
	log        *slog.Logger
	keyspace   string
	bucketSize int64
}

var keyspaceName = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9_]{0,47}$`)

// Open connects to the cluster, creates the keyspace when missing and
// applies the migrations it has not applied yet.
func Open(ctx context.Context, opts Options) (*DB, error) {
	if len(opts.Hosts) == 0 {
		return nil, errors.New("cassandra: no hosts")
	}
	if opts.Keyspace == "" {
		opts.Keyspace = "natter"
	}
	if !keyspaceName.MatchString(opts.Keyspace) {
		return nil, fmt.Errorf("cassandra: keyspace %q: want letters, digits and _, starting with a letter", opts.Keyspace)
	}
	if opts.Replication == "" {
		opts.Replication = `{'class': 'SimpleStrategy', 'replication_factor': 1}`
	}
	if opts.Consistency == "" {
		opts.Consistency = "LOCAL_QUORUM"
	}
	consistency, err := gocql.ParseConsistencyWrapper(opts.Consistency)
	if err != nil {
		return nil, fmt.Errorf("cassandra: consistency: %w", err)
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.bucketSize <= 0 {
		opts.bucketSize = BucketSize
	}

	cluster := gocql.NewCluster(opts.Hosts...)
	cluster.Consistency = consistency
	cluster.SerialConsistency = gocql.LocalSerial
	cluster.Timeout = opts.Timeout
	cluster.ConnectTimeout = opts.Timeout
	// Every statement natter sends is idempotent, so the driver may retry
	// it on another host after a timeout.
	cluster.RetryPolicy = &gocql.SimpleRetryPolicy{NumRetries: 2}
	cluster.Logger = slogLogger{opts.Logger}

	if err := ensureKeyspace(ctx, cluster, opts.Keyspace, opts.Replication, opts.Logger); err != nil {
		return nil, err
	}
	cluster.Keyspace = opts.Keyspace
	// Token-aware: each statement goes to a replica of its partition. (A
	// policy serves one session only, hence set after the one above.)
	cluster.PoolConfig.HostSelectionPolicy = gocql.TokenAwareHostPolicy(gocql.RoundRobinHostPolicy())
	s, err := cluster.CreateSession()
	if err != nil {
		return nil, fmt.Errorf("cassandra: connect to keyspace %s: %w: %w", opts.Keyspace, store.ErrUnavailable, err)
	}
	db := &DB{s: s, log: opts.Logger, keyspace: opts.Keyspace, bucketSize: opts.bucketSize}
	if err := db.migrate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return db, nil
}

func ensureKeyspace(ctx context.Context, cluster *gocql.ClusterConfig, keyspace, replication string, log *slog.Logger) error {
	s, err := cluster.CreateSession()
	if err != nil {
		// The driver flattens the dial error to text; not reaching any
		// host is the textbook case of a later retry succeeding.
		return fmt.Errorf("cassandra: connect to %v: %w: %w", cluster.Hosts, store.ErrUnavailable, err)
	}
	defer s.Close()
	err = schemaChange(ctx, s, log, fmt.Sprintf(`CREATE KEYSPACE IF NOT EXISTS %s WITH replication = %s`, keyspace, replication))
	if err != nil {
		return fmt.Errorf("cassandra: create keyspace %s: %w", keyspace, classify(err))
	}
	return nil
}

// Close closes the session; safe to call twice.
func (db *DB) Close() error {
	db.s.Close()
	return nil
}

//go:embed migrations/*.cql
var migrations embed.FS

type migration struct {
	version    int
	name       string
	statements []string
}

// loadMigrations reads migrations/NNNN_name.cql in version order, each
// split into its statements.
func loadMigrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrations, "migrations")
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, e := range entries {
		prefix, _, _ := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(prefix)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("migration %s: name must be NNNN_description.cql", e.Name())
		}
		body, err := fs.ReadFile(migrations, "migrations/"+e.Name())
		if err != nil {
			return nil, err
		}
		m := migration{version: v, name: e.Name()}
		for _, stmt := range strings.Split(stripComments(string(body)), ";") {
			if stmt = strings.TrimSpace(stmt); stmt != "" {
				m.statements = append(m.statements, stmt)
			}
		}
		ms = append(ms, m)
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	return ms, nil
}

// stripComments drops "--" comments (the migrations keep no "--" in
// string literals), which the driver would otherwise send along.
func stripComments(cql string) string {
	var b strings.Builder
	for line := range strings.Lines(cql) {
		if code, _, found := strings.Cut(line, "--"); found {
			line = code + "\n"
		}
		b.WriteString(line)
	}
	return b.String()
}

// migrate applies what schema_migrations does not list. Every statement
// is CREATE ... IF NOT EXISTS, so a migration interrupted half-way (there
// are no DDL transactions) is simply applied again.
func (db *DB) migrate(ctx context.Context) error {
	ms, err := loadMigrations()
	if err != nil {
		return fmt.Errorf("cassandra: migrations: %w", err)
	}
	if err := db.s.Query(`CREATE TABLE IF NOT EXISTS schema_migrations (
		version int PRIMARY KEY, name text, applied_at bigint)`).WithContext(ctx).Exec(); err != nil {
		return fmt.Errorf("cassandra: migrate: %w", classify(err))
	}
	applied := map[int]bool{}
	newest := 0
	iter := db.s.Query(`SELECT version FROM schema_migrations`).WithContext(ctx).Iter()
	var v int
	for iter.Scan(&v) {
		applied[v] = true
		newest = max(newest, v)
	}
	if err := iter.Close(); err != nil {
		return fmt.Errorf("cassandra: migrate: %w", classify(err))
	}
	if len(ms) > 0 && newest > ms[len(ms)-1].version {
		return fmt.Errorf("cassandra: schema version %d is newer than this binary's %d", newest, ms[len(ms)-1].version)
	}
	for _, m := range ms {
		if applied[m.version] {
			continue
		}
		start := time.Now()
		for _, stmt := range m.statements {
			if err := schemaChange(ctx, db.s, db.log, stmt); err != nil {
				return fmt.Errorf("cassandra: migrate %s: %w", m.name, classify(err))
			}
		}
		if err := db.s.Query(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
			m.version, m.name, time.Now().UnixMilli()).WithContext(ctx).Exec(); err != nil {
			return fmt.Errorf("cassandra: migrate %s: %w", m.name, classify(err))
		}
		db.log.Info("cassandra migration applied", "name", m.name, "took", time.Since(start).Round(time.Millisecond))
	}
	return nil
}

// schemaChange runs one CREATE ... IF NOT EXISTS, again after a timeout:
// a schema change waits for the cluster's schema agreement, which on a
// loaded node can outlast a request's timeout (seen in the e2e suite at a
// load average of 20 on 2 cores), and repeating one is harmless.
func schemaChange(ctx context.Context, s *gocql.Session, log *slog.Logger, stmt string) error {
	var err error
	for attempt := range 5 {
		if err = s.Query(stmt).WithContext(ctx).Exec(); err == nil || !unavailable(err) {
			return err
		}
		log.Warn("cassandra schema change timed out; trying again", "attempt", attempt+1, "err", err)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(attempt+1) * time.Second):
		}
	}
	return err
}

// classify translates driver errors, once, into store's: a missing row is
// store.ErrNotFound; whatever a later retry may fix (timeouts, too few
// replicas, overload, no connection) is store.ErrUnavailable. Both keep
// the driver's error in the chain.
func classify(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, gocql.ErrNotFound) {
		return fmt.Errorf("%w: %w", store.ErrNotFound, err)
	}
	if unavailable(err) {
		return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
	}
	return err
}

func unavailable(err error) bool {
	var re gocql.RequestError
	if errors.As(err, &re) {
		switch re.Code() {
		case gocql.ErrCodeUnavailable, gocql.ErrCodeOverloaded, gocql.ErrCodeBootstrapping,
			gocql.ErrCodeWriteTimeout, gocql.ErrCodeReadTimeout, gocql.ErrCodeReadFailure,
			gocql.ErrCodeWriteFailure, gocql.ErrCodeCASWriteUnknown, gocql.ErrCodeTruncate:
			return true
		}
		return false
	}
	for _, target := range []error{
		gocql.ErrNoConnections, gocql.ErrNoConnectionsStarted, gocql.ErrTimeoutNoResponse,
		gocql.ErrConnectionClosed, gocql.ErrTooManyTimeouts, gocql.ErrNoStreams, gocql.ErrSessionClosed,
		gocql.ErrUnavailable, gocql.ErrHostQueryFailed, context.DeadlineExceeded,
	} {
		if errors.Is(err, target) {
			return true
		}
	}
	var ne net.Error
	return errors.As(err, &ne)
}

// slogLogger routes gocql's log lines (reconnects, schema agreement) to
// slog at debug level: the errors that matter reach callers anyway.
type slogLogger struct{ log *slog.Logger }

func (l slogLogger) Print(v ...any) { l.log.Debug("gocql: " + fmt.Sprint(v...)) }
func (l slogLogger) Printf(format string, v ...any) {
	l.log.Debug("gocql: " + fmt.Sprintf(format, v...))
}
func (l slogLogger) Println(v ...any) { l.log.Debug("gocql: " + fmt.Sprint(v...)) }
