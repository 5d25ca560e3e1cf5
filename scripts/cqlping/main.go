// Command cqlping prints the release_version of the Cassandra node at
// host:port and exits 0, or exits 1 when it does not answer: the
// readiness probe of scripts/cassandra, without cqlsh (and Python).
package main

import (
	"fmt"
	"os"
	"time"

	"github.com/gocql/gocql"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: cqlping host:port")
		os.Exit(2)
	}
	version, err := ping(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "cqlping:", err)
		os.Exit(1)
	}
	fmt.Println(version)
}

func ping(addr string) (string, error) {
	cluster := gocql.NewCluster(addr)
	cluster.Timeout = 5 * time.Second
	cluster.ConnectTimeout = 5 * time.Second
	cluster.DisableInitialHostLookup = true
	cluster.NumConns = 1
	cluster.Logger = quiet{}
	s, err := cluster.CreateSession()
	if err != nil {
		return "", fmt.Errorf("connect to %s: %w", addr, err)
	}
	defer s.Close()
	var version string
	if err := s.Query(`SELECT release_version FROM system.local`).Scan(&version); err != nil {
		return "", fmt.Errorf("query %s: %w", addr, err)
	}
	return version, nil
}

// quiet drops gocql's own logging: a refused connection while the node
// starts is expected, and the exit status says it.
type quiet struct{}

func (quiet) Print(...any)          {}
func (quiet) Printf(string, ...any) {}
func (quiet) Println(...any)        {}
