package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/natter-chat/natter/internal/testnode"
)

// The HTTP timeouts cut what an attacker holds (a body that trickles, an
// idle keep-alive) and nothing a client legitimately keeps open: a
// WebSocket and a long-poll both outlive them.
func TestHTTPTimeoutsCutAttackersNotClients(t *testing.T) {
	node := testnode.Start(t, testnode.Options{Flags: []string{"--http-body-timeout", "1s", "--http-idle-timeout", "1s"}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rest := node.Client()
	defer rest.Close()
	_, as, err := rest.NewUser(ctx, "alice", "password123", 1)
	if err != nil {
		t.Fatal(err)
	}
	bob, _, err := rest.NewUser(ctx, "bob", "password123", 1)
	if err != nil {
		t.Fatal(err)
	}

	// A refresh whose body trickles, a byte every 200 ms, is cut.
	c, err := net.Dial("tcp", node.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	start := time.Now()
	fmt.Fprintf(c, "POST /v1/auth/refresh HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
	go func() {
		for range 100 {
			if _, err := c.Write([]byte(" ")); err != nil {
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
	}()
	if res, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil {
		res.Body.Close()
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("a trickling body was held for %v (body timeout 1s)", took)
	}

	// An idle keep-alive connection is closed after the idle timeout.
	k, err := net.Dial("tcp", node.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	_ = k.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(k, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(k)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	idle := time.Now()
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("idle connection: want EOF from the server, got %v", err)
	}
	if took := time.Since(idle); took > 10*time.Second {
		t.Fatalf("idle connection closed after %v (idle timeout 1s)", took)
	}

	// A WebSocket, silent for 3 s, still works.
	ws, _, err := node.Dial(ctx, as[0].Access, testnode.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if _, err := ws.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second) // the silence under test, three idle and body timeouts long
	if f, err := ws.Request(ctx, "m1", map[string]any{"type": "send", "client_message_id": "m1", "recipient_id": bob.ID,
		"message_type": "user", "content": "hi", "timestamp": time.Now().UnixMilli()}); err != nil || f.Type != "ack" {
		t.Fatalf("send on a WebSocket silent for 3s: %+v %v", f, err)
	}

	// A long-poll of 3 s is answered after its 3 s, not cut at 1 s.
	var first struct{ Cursor string }
	if err := rest.Call(ctx, 200, http.MethodGet, "/v1/events", as[0].Access, nil, &first); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, node.URL()+"/v1/events?timeout=3&cursor="+url.QueryEscape(first.Cursor), nil)
	req.Header.Set("Authorization", "Bearer "+as[0].Access)
	start = time.Now()
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("long-poll: %v", err)
	}
	defer res.Body.Close()
	var page struct{ Events []json.RawMessage }
	if err := json.NewDecoder(res.Body).Decode(&page); err != nil || res.StatusCode != 200 {
		t.Fatalf("long-poll answer %d: %v", res.StatusCode, err)
	}
	if took := time.Since(start); took < 2900*time.Millisecond {
		t.Fatalf("long-poll answered after %v with %d events, want its 3 s timeout", took, len(page.Events))
	}
}
