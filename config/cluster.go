package config

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// Cluster is how a node reaches NATS beyond its own embedded server: as
// one embedded node of a NATS cluster (Name, Listen, Routes), or as a
// client of an external cluster (URLs). Zero runs the single node.
type Cluster struct {
	// Name is the NATS cluster's name (--nats-cluster), the same on
	// every node; set, the embedded server joins or forms that cluster.
	Name string
	// Listen is host:port for routes from the other nodes.
	Listen string
	// Routes are the nodes' route URLs, nats-route://host:port; the same
	// list may be given to every node (a route to itself is ignored).
	Routes []string
	// ServerName is this node's name in the cluster; empty means the one
	// kept in DataDir/nats-server-name (made on the first start).
	ServerName string
	// SecretFile holds the route secret; empty means one derived from
	// the token key (DataDir/keys/token.key), which every node of a
	// cluster shares anyway.
	SecretFile string

	// URLs are an external cluster's client URLs (--nats-url): no
	// embedded server runs, the node is gateway and consumers only.
	// User and password may be in the URLs; they are never logged.
	URLs []string
	// Creds is a NATS credentials file (JWT and nkey seed) for URLs.
	Creds string
}

// Embedded reports whether the embedded server is one node of a cluster.
func (c Cluster) Embedded() bool { return c.Name != "" }

// External reports whether the node uses an external NATS cluster.
func (c Cluster) External() bool { return len(c.URLs) > 0 }

// On reports cluster mode, where other processes share the streams.
func (c Cluster) On() bool { return c.Embedded() || c.External() }

// RegisterFlags binds the cluster settings to fs.
func (c *Cluster) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Name, "nats-cluster", c.Name, "join or form this NATS JetStream cluster with the embedded server (with --nats-cluster-listen and --nats-routes)")
	fs.StringVar(&c.Listen, "nats-cluster-listen", c.Listen, "host:port for routes from the other nodes of --nats-cluster")
	fs.Func("nats-routes", "comma-separated route URLs of the cluster's nodes, nats-route://host:port (this node's own is ignored)", func(s string) error {
		c.Routes = splitList(s)
		return nil
	})
	fs.StringVar(&c.ServerName, "nats-name", c.ServerName, "this node's unique, stable name in the cluster (default: kept in --data/nats-server-name, made on the first start)")
	fs.StringVar(&c.SecretFile, "nats-cluster-secret-file", c.SecretFile, "file with the secret routes authenticate with, the same on every node (default: derived from --data/keys/token.key, which the nodes share)")
	fs.Func("nats-url", "comma-separated client URLs of an external NATS cluster (user:password@ allowed, never logged): no embedded server", func(s string) error {
		c.URLs = splitList(s)
		return nil
	})
	fs.StringVar(&c.Creds, "nats-creds", c.Creds, "NATS credentials file (JWT and seed) for --nats-url")
}

func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// validate reports every invalid cluster setting; natsListen is
// --nats-listen, which an external cluster has no use for.
func (c Cluster) validate(natsListen string) error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	check(!(c.Embedded() && c.External()), "--nats-cluster and --nats-url exclude each other (embed a node, or use an external cluster)")
	check(!c.External() || natsListen == "", "--nats-listen needs the embedded server; with --nats-url clients use the external cluster")
	check(c.Creds == "" || c.External(), "--nats-creds needs --nats-url")
	if c.Embedded() {
		_, _, err := net.SplitHostPort(c.Listen)
		check(err == nil, "--nats-cluster needs --nats-cluster-listen host:port")
		check(len(c.Routes) > 0, "--nats-cluster needs --nats-routes")
	} else {
		check(c.Listen == "" && len(c.Routes) == 0 && c.ServerName == "" && c.SecretFile == "",
			"--nats-cluster-listen, --nats-routes, --nats-name and --nats-cluster-secret-file need --nats-cluster")
	}
	for _, r := range c.Routes {
		u, err := url.Parse(r)
		// Never quote a URL that may hold a password.
		check(err == nil && u.Host != "" && (u.Scheme == "nats-route" || u.Scheme == "nats") && u.User == nil,
			"--nats-routes: each must be nats-route://host:port, without credentials (routes use the cluster secret)")
	}
	for _, s := range c.URLs {
		u, err := url.Parse(s)
		check(err == nil && u.Host != "" && (u.Scheme == "nats" || u.Scheme == "tls"), "--nats-url: each must be nats://[user:password@]host:port or tls://…")
	}
	return errors.Join(errs...)
}

// AutoReplicas is the replica count a cluster of size nodes gets when
// --replicas is not set: every node up to 3.
func AutoReplicas(size int) int { return max(1, min(size, 3)) }
