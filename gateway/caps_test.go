package gateway

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/natter-chat/natter/schema"
)

// A user over their WebSocket cap gets 429 rate_limited with Retry-After
// on the upgrade, whatever address they come from; another user is not
// affected; closing a socket frees its slot.
func TestWebSocketsPerUserAreCapped(t *testing.T) {
	n, _ := startNode(t, nodeOptions{gateway: Config{RateLimit: true, AuthBurst: 1000, AuthRate: 1000, MaxWSPerUser: 3}})
	alice, bob := n.user("alice"), n.user("bob")
	var open []*ws
	for range 3 {
		open = append(open, n.dial(alice))
	}
	url := "ws" + strings.TrimPrefix(n.url, "http") + "/v1/ws?access_token=" + alice.token
	conn, resp, err := websocket.DefaultDialer.Dial(url, nil)
	if err == nil {
		conn.Close()
		t.Fatal("a 4th WebSocket of alice's was accepted, want 429")
	}
	if resp == nil || resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("4th WebSocket: %v %v, want 429 with Retry-After", resp, err)
	}
	resp.Body.Close()
	n.dial(bob) // bob has his own slots

	// The open ones still work.
	open[0].write(map[string]any{"type": "ping", "ref": "p"})
	open[0].await(isType("pong"))

	_ = open[2].conn.Close()
	eventually(t, "a slot after closing a socket", func() bool {
		c, resp, err := websocket.DefaultDialer.Dial(url, nil)
		if err != nil {
			if resp == nil || resp.StatusCode != http.StatusTooManyRequests {
				t.Fatalf("dial after closing one: %v %v", resp, err)
			}
			return false
		}
		c.Close()
		return true
	})
}

// Concurrent long-polls over the cap get 429 rate_limited; when the
// waiting ones answer, polling works again. Off with --rate-limit off.
func TestLongPollsPerUserAreCapped(t *testing.T) {
	n, _ := startNode(t, nodeOptions{gateway: Config{RateLimit: true, AuthBurst: 1000, AuthRate: 1000, MaxPollsPerUser: 2}})
	alice, bob := n.user("alice"), n.user("bob")
	cur := n.do("GET", "/v1/events", alice.token, nil).body["cursor"].(string)
	var wg sync.WaitGroup
	answers := make(chan answer2, 2)
	for range 2 {
		wg.Go(func() {
			for {
				// The probe below may hold a slot for a moment: retry.
				a := n.do("GET", "/v1/events?timeout=30&cursor="+cur, alice.token, nil)
				if a.status != http.StatusTooManyRequests {
					answers <- a
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	eventually(t, "a third poll refused while two wait", func() bool {
		r := n.do("GET", "/v1/events?timeout=0&cursor="+cur, alice.token, nil)
		if r.status == http.StatusTooManyRequests {
			if r.code() != schema.CodeRateLimited || r.header.Get("Retry-After") == "" {
				t.Fatalf("refused poll: %d %s %v, want rate_limited with Retry-After", r.status, r.raw, r.header)
			}
			return true
		}
		return false
	})
	if r := n.do("GET", "/v1/events?timeout=0", bob.token, nil); r.status != 200 {
		t.Fatalf("bob's poll while alice's are capped: %d %s", r.status, r.raw)
	}
	n.send(bob, alice, "wake")
	wg.Wait()
	close(answers)
	for a := range answers {
		if a.status != 200 {
			t.Fatalf("waiting poll: %d %s", a.status, a.raw)
		}
	}
	if r := n.do("GET", "/v1/events?timeout=0&cursor="+cur, alice.token, nil); r.status != 200 {
		t.Fatalf("poll after the others answered: %d %s", r.status, r.raw)
	}

	off, _ := startNode(t, nodeOptions{gateway: Config{MaxPollsPerUser: 1, MaxWSPerUser: 1}})
	carol := off.user("carol")
	off.dial(carol)
	off.dial(carol)
}

func TestUserCapReleaseTwice(t *testing.T) {
	c := newUserCap("things", 1)
	rel, err := c.acquire("u")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.acquire("u"); err == nil {
		t.Fatal("second acquire within a cap of 1 succeeded")
	}
	rel()
	rel()
	if c.count("u") != 0 || len(c.open) != 0 {
		t.Fatalf("after two releases: %d open, %d users kept", c.count("u"), len(c.open))
	}
	r1, _ := c.acquire("u")
	if _, err := c.acquire("u"); err == nil {
		t.Fatal("a double release gave back two slots")
	}
	r1()
}
