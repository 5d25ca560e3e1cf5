package testnode

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/natter-chat/natter/chat/auth"
)

// ClusterName is the --nats-cluster of the nodes StartCluster starts.
const ClusterName = "natter-test"

// Cluster is n natter nodes whose embedded NATS servers form one
// JetStream cluster over loopback routes, sharing one PostgreSQL
// database and the keys of docs/operations.md ("Running a cluster").
// Each node is an ordinary *Node: Kill9, Term, Signal and Restart work
// per node, and a restarted node keeps its HTTP, route and NATS ports.
type Cluster struct {
	nodes []*Node
	db    *database
	once  sync.Once
}

// StartCluster starts n nodes (opts apply to each; DataDir is ignored)
// at once, since none is healthy before a quorum is up, and waits until
// every one answers /readyz 200. The store is one database created on
// opts.PostgresURL, or $NATTER_TEST_POSTGRES_URL: cluster mode needs a
// store the nodes share, so without one the test fails. Everything is
// stopped and dropped when the test ends.
func StartCluster(tb TB, n int, opts Options) *Cluster {
	tb.Helper()
	return startCluster(tb, n, opts, LaunchCluster)
}

func startCluster(tb TB, n int, opts Options, launch func(context.Context, []string, Options) (*Cluster, error)) *Cluster {
	tb.Helper()
	if opts.PostgresURL == "" {
		opts.PostgresURL = os.Getenv(PostgresEnv)
	}
	if opts.PostgresURL == "" {
		tb.Fatalf("testnode: a cluster needs a shared store: set %s", PostgresEnv)
	}
	ready := opts.Ready
	if ready <= 0 {
		ready = 2 * DefaultReady
	}
	ctx, cancel := context.WithTimeout(context.Background(), ready)
	defer cancel()
	dirs := make([]string, n)
	for i := range dirs {
		dirs[i] = tb.TempDir()
	}
	c, err := launch(ctx, dirs, opts)
	if err != nil {
		tb.Fatalf("testnode: %v", err)
	}
	tb.Cleanup(func() {
		if err := c.Close(); err != nil {
			tb.Logf("testnode: %v", err)
		}
		if tb.Failed() {
			for i, nd := range c.nodes {
				tb.Logf("natter node %d log tail (%s):\n%s", i, nd.addr, nd.Log())
			}
		}
	})
	return c
}

// LaunchCluster is StartCluster for programs: one node per data
// directory, the database on opts.PostgresURL (required). The caller
// must Close the cluster.
func LaunchCluster(ctx context.Context, dirs []string, opts Options) (*Cluster, error) {
	if len(dirs) == 0 {
		return nil, errors.New("cluster: no data directories")
	}
	routes := make([]string, len(dirs))
	listen := make([]string, len(dirs))
	for i := range dirs {
		var err error
		if listen[i], err = freeAddr(); err != nil {
			return nil, err
		}
		routes[i] = "nats-route://" + listen[i]
	}
	return launchNodes(ctx, dirs, opts, func(i int) []string {
		return []string{"--nats-cluster", ClusterName, "--nats-cluster-listen", listen[i],
			"--nats-routes", strings.Join(routes, ","), "--nats-name", fmt.Sprintf("n%d", i)}
	})
}

// StartExternalCluster starts n nodes as clients of the external NATS
// cluster at natsURL (--nats-url, credentials in the URL; no embedded
// server) on one shared database, like StartCluster.
func StartExternalCluster(tb TB, n int, natsURL string, opts Options) *Cluster {
	tb.Helper()
	return startCluster(tb, n, opts, func(ctx context.Context, dirs []string, opts Options) (*Cluster, error) {
		return launchNodes(ctx, dirs, opts, func(int) []string { return []string{"--nats-url", natsURL} })
	})
}

// launchNodes starts a node per directory at once (none is healthy
// before the cluster has a quorum) with the shared keys and database and
// each node's flags, then waits until all are ready.
func launchNodes(ctx context.Context, dirs []string, opts Options, flags func(i int) []string) (*Cluster, error) {
	if opts.PostgresURL == "" {
		return nil, errors.New("cluster: a PostgreSQL URL is required (the nodes share the store)")
	}
	c := &Cluster{}
	var err error
	if c.db, err = createDatabase(ctx, opts.PostgresURL); err != nil {
		return nil, err
	}
	if err := shareKeys(dirs); err != nil {
		_ = c.Close()
		return nil, err
	}
	c.nodes = make([]*Node, len(dirs))
	errs := make([]error, len(dirs))
	var wg sync.WaitGroup
	for i, dir := range dirs {
		o := opts
		o.DataDir, o.PostgresURL = dir, ""
		o.Flags = append(append(postgresFlags(c.db.url), flags(i)...), opts.Flags...)
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.nodes[i], errs[i] = Launch(ctx, o)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("cluster: %w", err)
	}
	if err := c.WaitReady(ctx); err != nil {
		// The nodes' logs say why (no quorum, a stream not placed); they
		// are gone once Close has run.
		var logs strings.Builder
		for i, n := range c.nodes {
			fmt.Fprintf(&logs, "\nnatter node %d log tail (%s):\n%s", i, n.addr, n.Log())
		}
		_ = c.Close()
		return nil, fmt.Errorf("%w%s", err, logs.String())
	}
	return c, nil
}

// shareKeys does what docs/operations.md asks of an operator: one token
// key (it signs tokens, encrypts cursors, and yields the route secret and
// the NATS-native login key) copied into every node's keys/ before its
// first start.
func shareKeys(dirs []string) error {
	key, err := auth.LoadOrCreateKey(filepath.Join(dirs[0], "keys", "token.key"))
	if err != nil {
		return err
	}
	for _, dir := range dirs[1:] {
		if err := os.MkdirAll(filepath.Join(dir, "keys"), 0o700); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, "keys", "token.key"), key, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// Nodes are the cluster's nodes, in start order.
func (c *Cluster) Nodes() []*Node { return c.nodes }

// Node is the i-th node.
func (c *Cluster) Node(i int) *Node { return c.nodes[i] }

// WaitReady waits until every running node answers /readyz 200.
func (c *Cluster) WaitReady(ctx context.Context) error {
	for _, n := range c.nodes {
		if n.Running() {
			if err := n.WaitReady(ctx); err != nil {
				return err
			}
		}
	}
	return nil
}

// WaitReady polls /readyz until it answers 200 or ctx ends.
func (n *Node) WaitReady(ctx context.Context) error {
	client := &http.Client{Timeout: 2 * time.Second}
	var last string
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, n.URL()+"/readyz", nil)
		res, err := client.Do(req)
		if err == nil {
			b := make([]byte, 512)
			k, _ := res.Body.Read(b)
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%d %s", res.StatusCode, b[:k])
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %w (last answer: %s)", n.addr, ctx.Err(), last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Close kills every node and drops the database; safe to call twice.
func (c *Cluster) Close() error {
	var errs []error
	c.once.Do(func() {
		for _, n := range c.nodes {
			if n != nil {
				errs = append(errs, n.Close())
			}
		}
		if c.db != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			errs = append(errs, c.db.drop(ctx))
			cancel()
		}
	})
	return errors.Join(errs...)
}
