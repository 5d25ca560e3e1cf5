package client_test

import (
	"context"
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/natter-chat/natter/client"
	"github.com/natter-chat/natter/internal/testnode"
)

func TestMain(m *testing.M) { os.Exit(testnode.Main(m)) }

const wait = 20 * time.Second

// Refusals carry the contract's status and code.
func TestErrorsCarryTheContractsCode(t *testing.T) {
	node := testnode.Start(t, testnode.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	c := client.New(node.URL(), client.Options{})
	if _, err := c.Register(ctx, "alice", "a long password"); err != nil {
		t.Fatal(err)
	}
	_, err := c.Register(ctx, "alice", "a long password")
	var e *client.Error
	if !errors.As(err, &e) || e.Status != 409 || e.Code != "username_taken" {
		t.Errorf("registering twice: %v, want 409 username_taken", err)
	}
	if _, err := c.Login(ctx, "alice", "the wrong password", ""); client.Code(err) != "unauthorized" {
		t.Errorf("a wrong password: %v, want unauthorized", err)
	}
	if _, err := c.Me(ctx); !errors.Is(err, client.ErrNoSession) {
		t.Errorf("Me without a login: %v, want ErrNoSession", err)
	}
	if _, err := c.Login(ctx, "alice", "a long password", "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.UserByName(ctx, "nobody"); client.Code(err) != "not_found" {
		t.Errorf("an unknown user: %v, want not_found", err)
	}
	if _, err := c.Send(ctx, client.SendRequest{ClientMessageID: "m1", RecipientID: c.Session().UserID}); client.Code(err) != "bad_request" {
		t.Errorf("an empty message: %v, want bad_request", err)
	}
}

// Many calls that find the token expired at once refresh it once: a
// second use of the rotated refresh token would revoke the device.
func TestConcurrentCallsRefreshOnce(t *testing.T) {
	node := testnode.Start(t, testnode.Options{Flags: []string{"--access-token-ttl", "1s"}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*wait)
	defer cancel()
	var refreshes atomic.Int32
	c := client.New(node.URL(), client.Options{OnRefresh: func(client.Session) error { refreshes.Add(1); return nil }})
	if _, err := c.Register(ctx, "alice", "a long password"); err != nil {
		t.Fatal(err)
	}
	first, err := c.Login(ctx, "alice", "a long password", "test")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(first.ExpiresAt.Add(500 * time.Millisecond)))
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.Me(ctx)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("Me after expiry: %v", err)
		}
	}
	if n := refreshes.Load(); n != 1 {
		t.Errorf("%d refreshes, want 1", n)
	}
	if s := c.Session(); s.DeviceID != first.DeviceID || s.RefreshToken == first.RefreshToken {
		t.Errorf("after the refresh: device %s (was %s), refresh token rotated: %v", s.DeviceID, first.DeviceID, s.RefreshToken != first.RefreshToken)
	}
}

// The event stream: synced, a message, an error frame (whose status is a
// number), typing; resuming with a cursor replays exactly what followed.
func TestEventStream(t *testing.T) {
	node := testnode.Start(t, testnode.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	alice := client.New(node.URL(), client.Options{})
	bob := client.New(node.URL(), client.Options{})
	for name, c := range map[string]*client.Client{"alice": alice, "bob": bob} {
		if _, err := c.Register(ctx, name, "a long password"); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Login(ctx, name, "a long password", "test"); err != nil {
			t.Fatal(err)
		}
	}
	conn, err := bob.Dial(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	next := func(typ string) client.Event {
		t.Helper()
		for {
			ev, err := conn.Read()
			if err != nil {
				t.Fatalf("waiting for %s: %v", typ, err)
			}
			if ev.Type == typ {
				return ev
			}
		}
	}
	synced := next("synced")
	if synced.Cursor == "" || synced.HeartbeatMS <= 0 {
		t.Errorf("synced: %+v", synced)
	}
	ack, err := alice.Send(ctx, client.SendRequest{ClientMessageID: "m1", RecipientID: bob.Session().UserID, Content: "hi bob"})
	if err != nil {
		t.Fatal(err)
	}
	m := next("message")
	if m.Content != "hi bob" || m.Seq != 1 || m.MessageID != ack.MessageID || !m.Durable() {
		t.Errorf("message event: %+v", m)
	}
	if err := conn.Send(map[string]string{"type": "no such frame", "ref": "r1"}); err != nil {
		t.Fatal(err)
	}
	if e := next("error"); e.ErrorStatus != 400 || e.Code != "bad_request" || e.Ref != "r1" {
		t.Errorf("error frame: %+v", e)
	}
	if err := conn.Receipt(m.MessageID, client.StatusRead); err != nil {
		t.Fatal(err)
	}
	if r := next("receipt"); r.Status != client.StatusRead || r.Seq != 1 {
		t.Errorf("receipt event to the reader's devices: %+v", r)
	}
	conn.Close()

	// From the message's cursor: the receipt only, then synced.
	again, err := bob.Dial(ctx, m.Cursor)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	var types []string
	for {
		ev, err := again.Read()
		if err != nil {
			t.Fatal(err)
		}
		types = append(types, ev.Type)
		if ev.Type == "synced" {
			break
		}
	}
	if len(types) != 2 || types[0] != "receipt" {
		t.Errorf("replay after the message's cursor: %v, want [receipt synced]", types)
	}
}
