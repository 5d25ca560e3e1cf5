package testnode

import (
	"context"
	"net/http"
	"os"
	"syscall"
	"testing"
	"time"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

// TestNodeLifecycle drives one node through what the harness offers: REST,
// a WebSocket with replay by cursor, kill -9, SIGTERM and restarts.
func TestNodeLifecycle(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	n := Start(t, Options{})
	c := n.Client()
	defer c.Close()

	_, as, err := c.NewUser(ctx, "alice", "password123", 1)
	if err != nil {
		t.Fatal(err)
	}
	bob, bs, err := c.NewUser(ctx, "bob", "password123", 1)
	if err != nil {
		t.Fatal(err)
	}
	ws, _, err := n.Dial(ctx, bs[0].Access, DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	synced, err := ws.WaitSynced(ctx)
	if err != nil || synced.Cursor == "" {
		t.Fatalf("synced: %+v, %v", synced, err)
	}
	ack, err := c.Send(ctx, as[0].Access, NewSend("m1", bob.ID, "hello"))
	if err != nil || ack.Seq != 1 || ack.Duplicate {
		t.Fatalf("send: %+v, %v", ack, err)
	}
	ev, _, err := ws.Wait(ctx, 0, IsType("message"))
	if err != nil || ev.MessageID != ack.MessageID || ev.Content != "hello" || !ev.Durable() {
		t.Fatalf("message event: %+v, %v", ev, err)
	}

	rss, err := n.RSS()
	if err != nil || rss < 1<<20 {
		t.Errorf("RSS %d, %v", rss, err)
	}
	pid := n.Pid()
	if err := n.Kill9(); err != nil {
		t.Fatal(err)
	}
	if code, err := ws.WaitClosed(ctx); err != nil || code != 1006 {
		t.Errorf("socket after kill -9: code %d, %v; want 1006", code, err)
	}
	if err := n.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if n.Pid() == pid || n.Starts() != 2 {
		t.Errorf("restart: pid %d (was %d), starts %d", n.Pid(), pid, n.Starts())
	}
	ws, _, err = n.Dial(ctx, bs[0].Access, DialOptions{Cursor: synced.Cursor})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ws.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
	if evs := ws.Frames(0); len(evs) != 2 || evs[0].MessageID != ack.MessageID {
		t.Errorf("replay after restart: %+v, want the message then synced", evs)
	}
	h, err := c.History(ctx, bs[0].Access, ack.ConversationID)
	if err != nil || len(h) != 1 || h[0].ClientMessageID != "m1" {
		t.Errorf("history: %+v, %v", h, err)
	}

	// A refused upgrade answers its status; a refused request too.
	if _, res, err := n.Dial(ctx, "garbage", DialOptions{}); err == nil || res == nil || res.StatusCode != http.StatusUnauthorized {
		t.Errorf("dial with a bad token: %v", err)
	}
	r, err := c.Do(ctx, "GET", "/v1/me/devices", "garbage", nil)
	if err != nil || r.Status != http.StatusUnauthorized || r.ErrorCode() != "unauthorized" {
		t.Errorf("bad token: %v, %v", r, err)
	}

	// SIGTERM closes sockets with 1001 and exits 0.
	if err := n.Term(ctx); err != nil {
		t.Fatal(err)
	}
	if code, err := ws.WaitClosed(ctx); err != nil || code != 1001 {
		t.Errorf("socket after SIGTERM: code %d, %v; want 1001", code, err)
	}
	if err := n.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(n.Pid(), 0); err != nil {
		t.Errorf("restarted process: %v", err)
	}
}
