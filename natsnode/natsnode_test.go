package natsnode

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// startListening runs a node on a random loopback port with the operator
// credentials of dataDir.
func startListening(t *testing.T, dataDir string) (*Node, Credentials) {
	t.Helper()
	op, err := LoadOrCreateOperator(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	node, err := Start(Options{StoreDir: filepath.Join(dataDir, "jetstream"), Listen: "127.0.0.1:-1", SyncInterval: time.Second, Operator: op})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(node.Shutdown)
	return node, op
}

func TestListenerRefusesConnectionsWithoutOperatorCredentials(t *testing.T) {
	node, op := startListening(t, t.TempDir())
	url := node.ClientURL()

	if nc, err := nats.Connect(url, nats.NoReconnect()); err == nil {
		nc.Close()
		t.Fatal("a connection without credentials was accepted")
	}
	if nc, err := nats.Connect(url, nats.UserInfo(OperatorUser, op.Password+"x"), nats.NoReconnect()); err == nil {
		nc.Close()
		t.Fatal("a wrong password was accepted")
	}
	if nc, err := nats.Connect(url, nats.UserInfo(selfUser, ""), nats.NoReconnect()); err == nil {
		nc.Close()
		t.Fatal("natter's own user was accepted without its password")
	}

	// natter's own in-process connection works and creates a stream...
	self, err := node.Connect("natter")
	if err != nil {
		t.Fatal(err)
	}
	defer self.Close()
	sjs, err := jetstream.New(self)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := sjs.CreateStream(ctx, jetstream.StreamConfig{Name: "CONV", Subjects: []string{"conv.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := sjs.Publish(ctx, "conv.x", []byte("hi")); err != nil {
		t.Fatal(err)
	}

	// ...that the operator sees over the network, with the stored
	// password or a URL that carries it.
	for _, opt := range []nats.Option{nats.UserInfo(op.User, op.Password), nil} {
		u := url
		if opt == nil {
			u = "nats://" + op.User + ":" + op.Password + "@" + url[len("nats://"):]
			opt = nats.Name("url")
		}
		nc, err := nats.Connect(u, opt, nats.NoReconnect())
		if err != nil {
			t.Fatalf("operator refused: %v", err)
		}
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		s, err := js.Stream(ctx, "CONV")
		if err != nil {
			t.Fatalf("operator cannot see the stream: %v", err)
		}
		if got := s.CachedInfo().State.Msgs; got != 1 {
			t.Fatalf("operator sees %d messages, want 1", got)
		}
		nc.Close()
	}
	if err := node.Healthy(); err != nil {
		t.Fatalf("fresh node unhealthy: %v", err)
	}
}

func TestOperatorCredentialsAreGeneratedOnceAndPrivate(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	first, err := LoadOrCreateOperator(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(first.Password) < 40 || first.User != OperatorUser {
		t.Fatalf("weak or unnamed credentials: %+v", first)
	}
	fi, err := os.Stat(filepath.Join(dir, OperatorFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("password file mode %v, want 0600", fi.Mode().Perm())
	}
	again, err := LoadOrCreateOperator(dir)
	if err != nil {
		t.Fatal(err)
	}
	if again != first {
		t.Fatal("a second start generated new credentials")
	}
}

func TestListenerNeedsCredentialsUnlessInsecure(t *testing.T) {
	dir := t.TempDir()
	if _, err := Start(Options{StoreDir: dir, Listen: "127.0.0.1:-1", SyncInterval: time.Second}); err == nil {
		t.Fatal("a listener without operator credentials started")
	}
	node, err := Start(Options{StoreDir: dir, Listen: "127.0.0.1:-1", SyncInterval: time.Second, Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	defer node.Shutdown()
	nc, err := nats.Connect(node.ClientURL(), nats.NoReconnect())
	if err != nil {
		t.Fatalf("insecure listener refused an anonymous connection: %v", err)
	}
	nc.Close()
}
