package natsnode

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/nats-io/nats-server/v2/server"
)

// Cluster makes the embedded server one node of a NATS cluster with
// clustered JetStream: its routes to the other nodes, authenticated by a
// secret every node shares.
type Cluster struct {
	// Name is the cluster's name, the same on every node.
	Name string
	// ServerName is this node's name, unique in the cluster and the same
	// across restarts: JetStream's Raft groups know their peers by it.
	ServerName string
	// Listen is host:port for routes from the other nodes.
	Listen string
	// Routes are the other nodes' route URLs (nats-route://host:port);
	// one to this node itself is ignored, so every node may be given the
	// same list.
	Routes []string
	// Secret authenticates routes both ways: a node that does not present
	// it is refused, so nobody who merely reaches the route port joins
	// the cluster (and reads every stream).
	Secret string
}

// routeUser is the user that routes present with the cluster secret.
const routeUser = "natter-route"

// ServerNameFile keeps this node's own name under the data directory.
const ServerNameFile = "nats-server-name"

// Size is the number of nodes the routes describe: the distinct route
// addresses other than this node's own, plus this node.
func (c *Cluster) Size() int {
	self := map[string]bool{c.Listen: true}
	if host, port, err := net.SplitHostPort(c.Listen); err == nil && (host == "" || host == "0.0.0.0" || host == "::") {
		self["127.0.0.1:"+port], self["localhost:"+port] = true, true
	}
	seen := map[string]bool{}
	for _, r := range c.Routes {
		u, err := url.Parse(r)
		if err != nil || u.Host == "" || self[u.Host] {
			continue
		}
		seen[u.Host] = true
	}
	return len(seen) + 1
}

// apply sets c on the server's options.
func (c *Cluster) apply(opts *server.Options) error {
	if c.Name == "" || c.ServerName == "" || c.Listen == "" {
		return errors.New("nats cluster: name, server name and listen address are required")
	}
	if len(c.Secret) < 16 {
		return errors.New("nats cluster: the route secret must be at least 16 characters")
	}
	host, port, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return fmt.Errorf("nats cluster listen address %q: %w", c.Listen, err)
	}
	opts.ServerName = c.ServerName
	opts.Cluster.Name = c.Name
	opts.Cluster.Host = host
	if opts.Cluster.Port, err = strconv.Atoi(port); err != nil {
		return fmt.Errorf("nats cluster listen port %q: %w", port, err)
	}
	opts.Cluster.Username, opts.Cluster.Password = routeUser, c.Secret
	// Nodes started one after the other keep trying each other for good.
	opts.Cluster.ConnectRetries = -1
	for _, r := range c.Routes {
		u, err := url.Parse(strings.TrimSpace(r))
		if err != nil || u.Host == "" || (u.Scheme != "nats-route" && u.Scheme != "nats") {
			return fmt.Errorf("nats route %q: want nats-route://host:port", r)
		}
		u.Scheme = "nats-route"
		u.User = url.UserPassword(routeUser, c.Secret)
		opts.Routes = append(opts.Routes, u)
	}
	return nil
}

// LoadOrCreateServerName returns the node name kept in dataDir, making
// one (natter- and 8 random hex digits) on the first start: unique per
// data directory and stable across its restarts.
func LoadOrCreateServerName(dataDir string) (string, error) {
	return loadOrCreate(filepath.Join(dataDir, ServerNameFile), func() (string, error) {
		b := make([]byte, 4)
		if _, err := rand.Read(b); err != nil {
			return "", err
		}
		return "natter-" + hex.EncodeToString(b), nil
	})
}

// loadOrCreate reads the one-line file at path, or writes make's value
// there (mode 0600, aside then renamed so a crash leaves no half value).
func loadOrCreate(path string, make func() (string, error)) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		if v := strings.TrimSpace(string(b)); v != "" {
			return v, nil
		}
		return "", fmt.Errorf("%s is empty", path)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	v, err := make()
	if err != nil {
		return "", fmt.Errorf("generate %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", fmt.Errorf("create %s: %w", filepath.Dir(path), err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(v+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	return v, nil
}

// ClusterNodes is how many nodes of the cluster this one sees: itself
// and every distinct node it has a route to. 1 without a cluster.
func (n *Node) ClusterNodes() int {
	rz, err := n.srv.Routez(&server.RoutezOptions{})
	if err != nil {
		return 1
	}
	seen := map[string]bool{}
	for _, r := range rz.Routes {
		seen[r.RemoteID] = true
	}
	return len(seen) + 1
}

// JetStreamReady reports whether JetStream answers requests: on a
// cluster, once its meta group has a leader (a quorum of nodes is up).
func (n *Node) JetStreamReady() bool {
	if !n.srv.JetStreamEnabled() {
		return false
	}
	if !n.srv.JetStreamIsClustered() {
		return true
	}
	return n.srv.JetStreamIsCurrent()
}
