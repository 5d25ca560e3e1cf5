package config

import (
	"flag"
	"strings"
	"testing"
)

// clustered is a valid embedded-cluster configuration.
func clustered() Server {
	c := Default()
	c.Store, c.PostgresURL = StorePostgres, "postgres://u:secret@db/natter"
	c.Cluster = Cluster{Name: "c", Listen: "127.0.0.1:6222", Routes: []string{"nats-route://127.0.0.1:6222", "nats-route://127.0.0.1:6223"}}
	return c
}

func TestClusterSettingsValidate(t *testing.T) {
	if err := clustered().Validate(); err != nil {
		t.Fatalf("embedded cluster: %v", err)
	}
	ext := clustered()
	ext.Cluster = Cluster{URLs: []string{"nats://u:p@a:4222", "tls://b:4222"}, Creds: "/x.creds"}
	ext.StreamReplicas = 3
	if err := ext.Validate(); err != nil {
		t.Fatalf("external cluster: %v", err)
	}
}

func TestClusterSettingsRefused(t *testing.T) {
	for _, c := range []struct {
		name string
		edit func(c *Server)
		want string
	}{
		{"sqlite on a cluster", func(c *Server) { c.Store = StoreSQLite }, "every node shares"},
		{"cassandra+sqlite on a cluster", func(c *Server) { c.Store, c.CassandraHosts = StoreCassandraSQLite, []string{"h"} }, "every node shares"},
		{"both modes", func(c *Server) { c.Cluster.URLs = []string{"nats://a:4222"} }, "exclude"},
		{"no listen", func(c *Server) { c.Cluster.Listen = "" }, "--nats-cluster-listen"},
		{"bad listen", func(c *Server) { c.Cluster.Listen = "6222" }, "--nats-cluster-listen"},
		{"no routes", func(c *Server) { c.Cluster.Routes = nil }, "--nats-routes"},
		{"route scheme", func(c *Server) { c.Cluster.Routes = []string{"http://a:6222"} }, "--nats-routes"},
		{"route with credentials", func(c *Server) { c.Cluster.Routes = []string{"nats-route://u:hunter2@a:6222"} }, "--nats-routes"},
		{"routes without a cluster", func(c *Server) { c.Cluster.Name = "" }, "need --nats-cluster"},
		{"url scheme", func(c *Server) { c.Cluster = Cluster{URLs: []string{"http://u:hunter2@a"}} }, "--nats-url"},
		{"listen with an external cluster", func(c *Server) { c.Cluster = Cluster{URLs: []string{"nats://a:4222"}}; c.NATSListen = "127.0.0.1:4222" }, "--nats-listen"},
		{"creds without urls", func(c *Server) { c.Cluster.Creds = "/x.creds" }, "--nats-creds"},
		{"replicas 6", func(c *Server) { c.StreamReplicas = 6 }, "--replicas"},
		{"replicas negative", func(c *Server) { c.StreamReplicas = -1 }, "--replicas"},
		{"replicas 3 alone", func(c *Server) { *c = Default(); c.StreamReplicas = 3 }, "needs a cluster"},
	} {
		s := clustered()
		c.edit(&s)
		err := s.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error naming %q", c.name, err, c.want)
		}
		// Never quote a secret back.
		if err != nil && (strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "secret@")) {
			t.Errorf("%s: the error quotes a password: %v", c.name, err)
		}
	}
}

func TestClusterFlags(t *testing.T) {
	c := Default()
	fs := flag.NewFlagSet("natter", flag.ContinueOnError)
	c.RegisterFlags(fs)
	if err := fs.Parse([]string{"--nats-cluster", "prod", "--nats-cluster-listen", "0.0.0.0:6222",
		"--nats-routes", " nats-route://a:6222, nats-route://b:6222,", "--nats-name", "a", "--stream-replicas", "3"}); err != nil {
		t.Fatal(err)
	}
	if c.Cluster.Name != "prod" || c.Cluster.Listen != "0.0.0.0:6222" || c.Cluster.ServerName != "a" ||
		len(c.Cluster.Routes) != 2 || c.Cluster.Routes[1] != "nats-route://b:6222" || c.StreamReplicas != 3 {
		t.Errorf("parsed %+v, replicas %d", c.Cluster, c.StreamReplicas)
	}
	if !c.Cluster.Embedded() || c.Cluster.External() || !c.Cluster.On() {
		t.Error("modes wrong")
	}
	if Default().StreamReplicas != 0 || AutoReplicas(1) != 1 || AutoReplicas(2) != 2 || AutoReplicas(5) != 3 {
		t.Error("replica defaults wrong")
	}
}
