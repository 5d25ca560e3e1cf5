package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gocql/gocql"
)

// A Cassandra outage while natter runs loses nothing and doubles nothing:
// sends keep being acknowledged (JetStream is the durable write), the
// persistence consumer waits it out (store.ErrUnavailable, retried in
// place, never dead-lettered: --max-deliver 1 would dead-letter at the
// first failure otherwise), and once Cassandra is back the history holds
// every acknowledged message exactly once.
//
// natter reaches Cassandra through a proxy of the test's own, so the
// outage is natter's alone and other tests may share the Cassandra node.
// Two outages: "stopped" (every connection reset, new ones closed at
// once, as a dead node) and "paused" (connections stay open and nothing
// is answered, as a node stopped with SIGSTOP: requests time out).
func TestServeRidesOutCassandraOutage(t *testing.T) {
	hosts := os.Getenv("NATTER_TEST_CASSANDRA_HOSTS")
	if hosts == "" {
		// A skip even in CI, whose PostgreSQL step runs this package too;
		// its Cassandra step runs this test by name.
		t.Skip("NATTER_TEST_CASSANDRA_HOSTS not set (scripts/cassandra start DIR PORT starts one)")
	}
	target := strings.TrimSpace(strings.Split(hosts, ",")[0])
	proxy := startCQLProxy(t, target)

	var b [6]byte
	_, _ = rand.Read(b[:])
	keyspace := "natter_outage_" + hex.EncodeToString(b[:])
	// Reads and the final drop go to Cassandra directly, around the proxy.
	cluster := gocql.NewCluster(target)
	cluster.Timeout = 20 * time.Second
	direct, err := cluster.CreateSession()
	if err != nil {
		t.Fatal(err)
	}
	// Registered first, so it runs last: after natter has stopped.
	t.Cleanup(func() {
		defer direct.Close()
		if err := direct.Query(`DROP KEYSPACE IF EXISTS ` + keyspace).Exec(); err != nil {
			t.Logf("drop keyspace %s: %v", keyspace, err)
		}
	})

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	srvCtx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	// The data directory is made here, not in the goroutine: its removal
	// must be registered before the cleanup that stops serve, so it runs after.
	data := t.TempDir()
	go func() {
		served <- serve(srvCtx, []string{"--http", addr, "--data", data, "--rate-limit", "off", "--log-level", "error",
			"--max-deliver", "1",
			"--store", "cassandra+sqlite", "--cassandra-hosts", proxy.addr, "--cassandra-keyspace", keyspace})
	}()
	t.Cleanup(func() {
		stop()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	c := &client{t: t, base: "http://" + addr}
	pollFor(t, 90*time.Second, "natter answers", func() bool { // the first start creates the keyspace
		resp, err := http.Get(c.base + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	})

	alice := c.account("alice")
	bob := c.account("bob")
	sent := 0
	send := func() {
		t.Helper()
		sent++
		c.call("POST", "/v1/messages", alice.token, http.StatusCreated, map[string]any{
			"client_message_id": fmt.Sprintf("m%d", sent), "recipient_id": bob.id, "message_type": "user",
			"content": fmt.Sprintf("message %d", sent), "timestamp": 1,
		}, nil)
	}
	stored := func() (n, distinct int) {
		t.Helper()
		iter := direct.Query(`SELECT client_message_id FROM ` + keyspace + `.messages`).Iter()
		seen := map[string]bool{}
		var cmid string
		for iter.Scan(&cmid) {
			n++
			seen[cmid] = true
		}
		if err := iter.Close(); err != nil {
			t.Fatal(err)
		}
		return n, len(seen)
	}
	send()
	pollFor(t, 20*time.Second, "the first message is stored", func() bool { n, _ := stored(); return n == 1 })

	for _, mode := range []string{"stopped", "paused"} {
		before, _ := stored()
		proxy.set(mode)
		const during = 20
		for range during {
			send() // acknowledged: JetStream has it
		}
		time.Sleep(2 * time.Second) // let persist meet the outage (it waits; nothing to poll for)
		if n, _ := stored(); n != before {
			t.Fatalf("%s: %d messages stored during the outage, want %d: the outage is not real", mode, n, before)
		}
		proxy.set("up")
		pollFor(t, 60*time.Second, mode+": every acknowledged message stored once after the outage", func() bool {
			n, distinct := stored()
			return n == sent && distinct == sent
		})
	}

	var hist struct {
		Messages []struct{ Seq int64 } `json:"messages"`
	}
	conv := c.conversationWith(alice.token, bob.id)
	c.call("GET", "/v1/conversations/"+conv+"/messages?limit=100", bob.token, http.StatusOK, nil, &hist)
	if len(hist.Messages) != sent || hist.Messages[0].Seq != int64(sent) {
		t.Fatalf("bob's history has %d messages (%v), want %d, newest seq %d", len(hist.Messages), hist.Messages, sent, sent)
	}
	for i, m := range hist.Messages {
		if m.Seq != int64(sent-i) {
			t.Fatalf("bob's history at %d has seq %d, want %d: a hole or a double", i, m.Seq, sent-i)
		}
	}
}

// pollFor waits up to d for cond.
func pollFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting until %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// cqlProxy forwards TCP connections to a Cassandra node. "stopped" resets
// every connection and closes new ones at once; "paused" keeps them and
// forwards nothing (bytes wait in the proxy, as in a stopped process's
// socket buffers); "up" forwards.
type cqlProxy struct {
	addr   string
	target string
	ln     net.Listener

	mu      sync.Mutex
	mode    string
	resumed chan struct{} // closed when a pause ends
	conns   map[net.Conn]struct{}
	wg      sync.WaitGroup
}

func startCQLProxy(t *testing.T, target string) *cqlProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cqlProxy{addr: ln.Addr().String(), target: target, ln: ln, mode: "up", resumed: make(chan struct{}),
		conns: map[net.Conn]struct{}{}}
	close(p.resumed)
	p.wg.Go(p.accept)
	t.Cleanup(p.close)
	return p
}

func (p *cqlProxy) accept() {
	for {
		conn, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		stopped := p.mode == "stopped"
		p.mu.Unlock()
		if stopped {
			conn.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			conn.Close()
			continue
		}
		if !p.track(conn, up) {
			continue
		}
		p.wg.Go(func() { p.pipe(up, conn) })
		p.wg.Go(func() { p.pipe(conn, up) })
	}
}

// track registers both ends, or closes them when the proxy is closing.
func (p *cqlProxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns == nil {
		for _, c := range cs {
			c.Close()
		}
		return false
	}
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
	return true
}

// untrack closes and forgets connections.
func (p *cqlProxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		c.Close()
		delete(p.conns, c)
	}
}

// pipe copies src to dst, holding each chunk while paused; it closes both
// when either side ends.
func (p *cqlProxy) pipe(dst, src net.Conn) {
	defer p.untrack(dst, src)
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			resumed := p.resumed
			p.mu.Unlock()
			<-resumed
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return // EOF, a reset or a close: the defers close the other side
		}
	}
}

func (p *cqlProxy) set(mode string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mode == "paused" && mode != "paused" {
		close(p.resumed)
	}
	if mode == "paused" && p.mode != "paused" {
		p.resumed = make(chan struct{})
	}
	if mode == "stopped" {
		for c := range p.conns {
			c.Close()
		}
		clear(p.conns)
	}
	p.mode = mode
}

// close stops accepting, resets every connection and waits for the
// proxy's goroutines. Safe to call twice.
func (p *cqlProxy) close() {
	p.ln.Close()
	p.set("up") // releases pipes held by a pause
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.conns = nil
	p.mu.Unlock()
	p.wg.Wait()
}
