package testnode

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gocql/gocql"
)

// TestCassandraKeyspacePerNode needs $NATTER_TEST_CASSANDRA_HOSTS and
// $NATTER_TEST_POSTGRES_URL. A real node: it runs on cassandra+postgres
// with a keyspace of its own, which natter creates, a restart keeps and
// Close drops.
func TestCassandraKeyspacePerNode(t *testing.T) {
	hosts, admin := os.Getenv(CassandraEnv), os.Getenv(PostgresEnv)
	if hosts == "" || admin == "" {
		t.Skip(CassandraEnv + " and " + PostgresEnv + " are not both set")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	n, err := Launch(ctx, Options{PostgresURL: admin, CassandraHosts: hosts})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	args := n.args
	at := func(flag string) string {
		i := slices.Index(args, flag)
		if i < 0 || i+1 >= len(args) {
			return ""
		}
		return args[i+1]
	}
	ks := at("--cassandra-keyspace")
	if at("--store") != "cassandra+postgres" || at("--cassandra-hosts") != hosts || !strings.HasPrefix(ks, "natter_t_") ||
		!strings.Contains(at("--postgres-url"), "/natter_t_") {
		t.Fatalf("natter started with %q, want cassandra+postgres on a natter_t_ keyspace and database", args)
	}
	cluster := gocql.NewCluster(strings.Split(hosts, ",")...)
	cluster.Timeout = 20 * time.Second
	s, err := cluster.CreateSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	exists := func() bool {
		t.Helper()
		var name string
		err := s.Query(`SELECT keyspace_name FROM system_schema.keyspaces WHERE keyspace_name = ?`, ks).WithContext(ctx).Scan(&name)
		if err != nil && !errors.Is(err, gocql.ErrNotFound) {
			t.Fatal(err)
		}
		return err == nil
	}
	if !exists() {
		t.Fatalf("keyspace %s does not exist while the node runs", ks)
	}
	if err := n.Kill9(); err != nil {
		t.Fatal(err)
	}
	if err := n.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if got := n.args[slices.Index(n.args, "--cassandra-keyspace")+1]; got != ks {
		t.Fatalf("the restart runs on keyspace %s, want %s", got, ks)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if exists() {
		t.Fatalf("keyspace %s still exists after Close", ks)
	}
}
