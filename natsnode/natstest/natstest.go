// Package natstest starts a real embedded NATS server with JetStream for
// tests: a temp store, an in-process connection, cleanup on test end.
package natstest

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/natter-chat/natter/natsnode"
)

// Server is a running test server.
type Server struct {
	t    testing.TB
	node *natsnode.Node
}

// Start runs a server with its store in t.TempDir().
func Start(t testing.TB) *Server {
	t.Helper()
	node, err := natsnode.Start(natsnode.Options{StoreDir: t.TempDir(), SyncInterval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(node.Shutdown)
	return &Server{t: t, node: node}
}

// Connect opens one more client connection (as a separate process would).
func (s *Server) Connect() (*nats.Conn, jetstream.JetStream) {
	s.t.Helper()
	nc, err := s.node.Connect(fmt.Sprintf("test-%s", s.t.Name()))
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		s.t.Fatal(err)
	}
	return nc, js
}

// JetStream starts a server and returns one connection's JetStream.
func JetStream(t testing.TB) jetstream.JetStream {
	t.Helper()
	_, js := Start(t).Connect()
	return js
}
