package testnode

import (
	"context"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

func TestListensOn(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ok, err := listensOn(os.Getpid(), ln.Addr().String())
	if err != nil || !ok {
		t.Fatalf("listensOn(self, %s) = %v, %v; want true", ln.Addr(), ok, err)
	}
	other, err := FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := listensOn(os.Getpid(), other); err != nil || ok {
		t.Fatalf("listensOn(self, %s) = %v, %v for a port nobody listens on; want false", other, ok, err)
	}
	// Another process's listener is not ours: pid 1 does not hold it.
	if ok, _ := listensOn(1, ln.Addr().String()); ok {
		t.Fatalf("listensOn(1, %s) = true for this test's listener", ln.Addr())
	}
}

// TestTakenPortIsNotMistakenForTheNode gives a node, as its first port,
// one another server already holds and answers /healthz 200 on (what a
// parallel test's node does when it wins the race for a port). The node
// must not take that answer for its own, and must start on a fresh port.
func TestTakenPortIsNotMistakenForTheNode(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(`{"status":"ok"}`)) })}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	taken := ln.Addr().String()
	handed := false
	freeAddr = func() (string, error) {
		if !handed {
			handed = true
			return taken, nil
		}
		return FreeAddr()
	}
	defer func() { freeAddr = FreeAddr }()

	n := Start(t, Options{})
	if n.Addr() == taken {
		t.Fatalf("the node reports the taken address %s as its own", taken)
	}
	if !strings.Contains(n.Log(), "address already in use") {
		t.Errorf("the first start did not meet the taken port:\n%s", n.Log())
	}
	if n.Starts() != 1 {
		t.Errorf("Starts() = %d after one start that bound its port, want 1", n.Starts())
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := n.Client()
	defer c.Close()
	if _, err := c.Register(ctx, "alice", "password123"); err != nil {
		t.Fatalf("register on the node's own port: %v", err)
	}
}
