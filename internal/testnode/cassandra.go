package testnode

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gocql/gocql"
)

// CassandraEnv names the Cassandra contact points (host:port,
// comma-separated) that, together with PostgresEnv, put every node Start
// starts on `--store cassandra+postgres`: messages in a keyspace of its
// own, the rest in its own PostgreSQL database (see the package doc).
const CassandraEnv = "NATTER_TEST_CASSANDRA_HOSTS"

// keyspace is one node's Cassandra keyspace. natter creates it (and its
// tables) when it first starts; Close drops it.
type keyspace struct {
	hosts []string
	name  string
}

func newKeyspace(hosts string) (*keyspace, error) {
	var hs []string
	for h := range strings.SplitSeq(hosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			hs = append(hs, h)
		}
	}
	if len(hs) == 0 {
		return nil, fmt.Errorf("%s names no host: %q", CassandraEnv, hosts)
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	return &keyspace{hosts: hs, name: "natter_t_" + hex.EncodeToString(b[:])}, nil
}

// cassandraFlags are the `natter serve` flags that keep a node's messages
// in ks and the rest in the PostgreSQL database at dbURL: the one place
// to change if the adapter's flags change.
func cassandraFlags(dbURL string, ks *keyspace) []string {
	return []string{"--store", "cassandra+postgres", "--postgres-url", dbURL,
		"--cassandra-hosts", strings.Join(ks.hosts, ","), "--cassandra-keyspace", ks.name}
}

// drop drops the keyspace. A schema change waits for the node's schema
// agreement, which takes seconds on a loaded machine: hence the retries
// beyond the request timeout.
func (ks *keyspace) drop(ctx context.Context) error {
	cluster := gocql.NewCluster(ks.hosts...)
	cluster.Timeout = 20 * time.Second
	cluster.ConnectTimeout = 10 * time.Second
	cluster.Logger = discardLogger{}
	s, err := cluster.CreateSession()
	if err != nil {
		return fmt.Errorf("drop keyspace %s: %w", ks.name, err)
	}
	defer s.Close()
	var errs []error
	for range 3 {
		err := s.Query(`DROP KEYSPACE IF EXISTS ` + ks.name).WithContext(ctx).Exec()
		if err == nil {
			return nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return fmt.Errorf("drop keyspace %s: %w", ks.name, errors.Join(errs...))
}

type discardLogger struct{}

func (discardLogger) Print(...any)          {}
func (discardLogger) Printf(string, ...any) {}
func (discardLogger) Println(...any)        {}
