package natsnode

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startCluster starts n embedded nodes routed to each other.
func startCluster(t *testing.T, n int, secret func(i int) string) []*Node {
	t.Helper()
	listen := make([]string, n)
	var routes []string
	for i := range listen {
		listen[i] = freePort(t)
		routes = append(routes, "nats-route://"+listen[i])
	}
	nodes := make([]*Node, n)
	errs := make(chan error, n)
	for i := range nodes {
		go func() {
			var err error
			nodes[i], err = Start(Options{StoreDir: t.TempDir(), SyncInterval: time.Second, Cluster: &Cluster{
				Name: "t", ServerName: fmt.Sprintf("n%d", i), Listen: listen[i], Routes: routes, Secret: secret(i)}})
			errs <- err
		}()
	}
	for range nodes {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for _, nd := range nodes {
		t.Cleanup(nd.Shutdown)
	}
	return nodes
}

func TestClusterCreatesR3Stream(t *testing.T) {
	nodes := startCluster(t, 3, func(int) string { return "a-shared-secret-of-some-length" })
	deadline := time.Now().Add(30 * time.Second)
	for !nodes[0].JetStreamReady() {
		if time.Now().After(deadline) {
			t.Fatal("no meta leader after 30 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	nc, err := nodes[0].Connect("t")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	s, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}, Replicas: 3})
	if err != nil {
		t.Fatalf("create after %v: %v", time.Since(start), err)
	}
	t.Logf("R3 stream created in %v, leader %s", time.Since(start), s.CachedInfo().Cluster.Leader)
	if got := nodes[0].ClusterNodes(); got != 3 {
		t.Errorf("node 0 sees %d nodes, want 3", got)
	}
}

// TestClusterRoutesNeedTheSecret: a node with another secret is refused
// by the others' routes (and refuses them): it never joins.
func TestClusterRoutesNeedTheSecret(t *testing.T) {
	nodes := startCluster(t, 3, func(i int) string {
		if i == 2 {
			return "an-intruder-without-the-secret"
		}
		return "a-shared-secret-of-some-length"
	})
	deadline := time.Now().Add(20 * time.Second)
	for nodes[0].ClusterNodes() != 2 || nodes[1].ClusterNodes() != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("nodes 0 and 1 see %d and %d nodes, want 2 each", nodes[0].ClusterNodes(), nodes[1].ClusterNodes())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Watched over a few of the routes' reconnect attempts, with messages
	// published both ways. The intruder itself may count a route it dialled
	// for the moment between the peer's INFO and the peer's refusal of its
	// CONNECT (CI saw it); nothing crosses such a route.
	inside, err := nodes[0].Connect("inside")
	if err != nil {
		t.Fatal(err)
	}
	defer inside.Close()
	outside, err := nodes[2].Connect("outside")
	if err != nil {
		t.Fatal(err)
	}
	defer outside.Close()
	crossed := make(chan string, 100)
	for _, c := range []struct {
		nc   *nats.Conn
		subj string
	}{{inside, "from.intruder"}, {outside, "from.cluster"}} {
		if _, err := c.nc.Subscribe(c.subj, func(m *nats.Msg) { crossed <- m.Subject }); err != nil {
			t.Fatal(err)
		}
		if err := c.nc.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	for until := time.Now().Add(3 * time.Second); time.Now().Before(until); time.Sleep(100 * time.Millisecond) {
		for i, nd := range nodes[:2] {
			if n := nd.ClusterNodes(); n != 2 {
				t.Fatalf("node %d sees %d nodes: the intruder joined", i, n)
			}
		}
		_ = inside.Publish("from.cluster", []byte("x"))
		_ = outside.Publish("from.intruder", []byte("x"))
		select {
		case subj := <-crossed:
			t.Fatalf("a message on %s crossed between the cluster and the intruder", subj)
		default:
		}
	}
	_ = inside.Flush()
	_ = outside.Flush()
	select {
	case subj := <-crossed:
		t.Fatalf("a message on %s crossed between the cluster and the intruder", subj)
	case <-time.After(200 * time.Millisecond):
	}
}

func TestClusterSize(t *testing.T) {
	for _, c := range []struct {
		listen string
		routes []string
		want   int
	}{
		{"127.0.0.1:6222", []string{"nats-route://127.0.0.1:6222", "nats-route://127.0.0.1:6223", "nats-route://127.0.0.1:6224"}, 3},
		{"127.0.0.1:6222", []string{"nats-route://127.0.0.1:6223", "nats-route://127.0.0.1:6224"}, 3},
		{"0.0.0.0:6222", []string{"nats-route://127.0.0.1:6222", "nats-route://b:6222", "nats-route://b:6222"}, 2},
		{"127.0.0.1:6222", []string{"nats-route://127.0.0.1:6222"}, 1},
	} {
		if got := (&Cluster{Listen: c.listen, Routes: c.routes}).Size(); got != c.want {
			t.Errorf("Size(%s, %v) = %d, want %d", c.listen, c.routes, got, c.want)
		}
	}
}
