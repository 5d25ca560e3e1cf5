package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/natter-chat/natter/internal/testnode"
)

func TestWebSocketUpgrade(t *testing.T) {
	t.Parallel()
	s := start(t, "--allowed-origins", "https://app.example.com,https://other.example.com")
	_, as := s.newUser("alice", 1)
	tok := as[0].access
	// The token in the Authorization header instead of the query.
	c, _, err := s.tryDial("", "", http.Header{"Authorization": {"Bearer " + tok}})
	if err != nil {
		t.Fatalf("upgrade with Authorization: Bearer: %v", err)
	}
	c.waitType("synced")
	c.close()
	for _, tc := range []struct {
		origin string
		ok     bool
	}{
		{"", true},
		{"http://" + s.addr, true},
		{"https://app.example.com", true},
		{"https://other.example.com", true},
		{"https://evil.example.com", false},
		{"https://app.example.com.evil.example", false},
		{"http://localhost:1", false},
		{"null", false},
	} {
		h := http.Header{}
		if tc.origin != "" {
			h.Set("Origin", tc.origin)
		}
		c, res, err := s.tryDial(tok, "", h)
		switch {
		case tc.ok && err != nil:
			t.Errorf("Origin %q refused: %v", tc.origin, err)
		case tc.ok:
			c.name = "origin " + tc.origin
			c.waitType("synced")
			c.close()
		case err == nil:
			t.Errorf("Origin %q accepted, want 403", tc.origin)
			c.close()
		case res == nil || res.StatusCode != http.StatusForbidden:
			t.Errorf("Origin %q: %v, want a 403 answer", tc.origin, err)
		default:
			r := resp{status: res.StatusCode}
			r.raw, _ = io.ReadAll(res.Body)
			_ = json.Unmarshal(r.raw, &r.body)
			wantError(t, r, http.StatusForbidden, "forbidden")
		}
	}
}

func TestSIGTERMClosesSocketsAndKeepsMessages(t *testing.T) {
	t.Parallel()
	s := start(t)
	_, as := s.newUser("alice", 1)
	bob, bs := s.newUser("bob", 1)
	a, _ := s.connect(as[0], "")
	b, _ := s.connect(bs[0], "")
	var conv string
	for i := range 10 {
		conv = str(a.sendWait(bob, fmt.Sprintf("g%d", i), "before shutdown"), "conversation_id")
	}
	began := time.Now()
	exited := s.signal(syscall.SIGTERM)
	for _, c := range []*wsClient{a, b} {
		if code := c.waitClosed(10 * time.Second); code != websocket.CloseGoingAway {
			t.Errorf("%s: close code %d on SIGTERM, want 1001", c.name, code)
		}
	}
	select {
	case <-exited:
	case <-time.After(10*time.Second - time.Since(began)):
		t.Fatalf("natter still running 10 s after SIGTERM")
	}
	if st := s.exitState(); !st.Success() {
		t.Errorf("natter exited with %v after SIGTERM, want 0", st)
	}
	t.Logf("stopped %s after SIGTERM", time.Since(began).Round(time.Millisecond))

	s.restart()
	if h := s.history(bs[0], conv); len(h) != 10 {
		t.Errorf("after a graceful restart history has %d messages, want 10", len(h))
	}
	s.login(bob)
}

func TestSIGTERMWithLongPollInFlight(t *testing.T) {
	t.Parallel()
	s := start(t)
	_, as := s.newUser("alice", 1)
	cur := str(s.must(http.StatusOK, "GET", "/v1/events", as[0].access, nil), "cursor")
	polled := make(chan error, 1)
	go func() {
		_, err := s.tryDo("GET", "/v1/events?timeout=60&cursor="+url.QueryEscape(cur), as[0].access, nil)
		polled <- err
	}()
	time.Sleep(300 * time.Millisecond) // let the poll start waiting
	began := time.Now()
	exited := s.signal(syscall.SIGTERM)
	select {
	case <-exited:
		if st := s.exitState(); !st.Success() {
			t.Errorf("natter exited with %v after SIGTERM, want 0", st)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("natter still running 10 s after SIGTERM while a long-poll (timeout=60) was waiting: shutdown waits for long-polls instead of answering them")
		<-exited
	}
	t.Logf("stopped %s after SIGTERM", time.Since(began).Round(time.Millisecond))
	select {
	case <-polled:
	case <-time.After(wait):
		t.Error("the long-poll never got an answer or an error")
	}
}

// Clients that never read are cut off (4029 or the TCP connection ends)
// while the server's memory stays bounded (the sixteen of them would hold
// 16 × 10 MB if it buffered for them); each then resumes with its cursor
// and misses nothing.
func TestSlowReadersAreDisconnected(t *testing.T) {
	t.Parallel()
	s := start(t)
	const (
		readers = 16
		n       = 170
		size    = 60000 // 10 MB to each reader
	)
	_, as := s.newUser("alice", 1)
	bob, bs := s.newUser("bob", readers)
	watcher, _ := s.connect(as[0], "")

	// The slow readers: raw connections nobody reads from, with a small
	// TCP window. A synced frame is the first thing on each; its cursor is
	// where each resumes.
	type slowReader struct {
		ws     *testnode.WS
		dev    device
		cursor string
		got    map[int64]int
	}
	slow := make([]*slowReader, readers)
	for i := range slow {
		c, _, err := s.tryDialWith(bs[i].access, testnode.DialOptions{ReadBuffer: 64 << 10, NoRead: true, HandshakeTimeout: wait})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		first, err := c.ws.Next(ctx)
		cancel()
		if err != nil || first.Type != "synced" {
			t.Fatalf("slow reader's first frame: %s %v", first.Raw, err)
		}
		slow[i] = &slowReader{ws: c.ws, dev: bs[i], cursor: first.Cursor, got: map[int64]int{}}
	}
	if st := watcher.presence(bob.id); st != "online" {
		t.Fatalf("bob is %s with %d connections open", st, readers)
	}

	before := s.rssKB()
	var peak int
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			if b, err := vmRSS(s.pid()); err == nil {
				peak = max(peak, b)
			}
			select {
			case <-stopSampling:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	content := string(slices.Repeat([]byte("x"), size))
	for k := range n {
		s.sendREST(as[0], bob, fmt.Sprintf("big-%d", k), content)
	}
	// The server gives up on them: bob goes offline (his only connections
	// are the slow ones). Nothing is read meanwhile.
	deadline := time.Now().Add(60 * time.Second)
	for watcher.presence(bob.id) != "offline" {
		if time.Now().After(deadline) {
			t.Fatalf("clients that have not read for 60 s while %d MB were sent to each are still connected", n*size>>20)
		}
		time.Sleep(250 * time.Millisecond)
	}
	close(stopSampling)
	<-sampled
	t.Logf("server RSS %d MB before, %d MB at the peak, while sending %d MB to each of %d clients that do not read",
		before/1024, peak/1024, n*size>>20, readers)
	if grow := peak - before; grow > 200*1024 {
		t.Errorf("server RSS grew by %d MB while %d clients did not read, want under 200 MB", grow/1024, readers)
	}

	// Four of them (reading 10 MB under -race costs seconds) read what was
	// buffered, then the end of the connection, and catch up.
	for i, r := range slow[:4] {
		r.ws.StartReading()
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		code, err := r.ws.WaitClosed(ctx)
		cancel()
		if err != nil { // as a read past the deadline: the end of the connection
			code = websocket.CloseAbnormalClosure
			_ = r.ws.Close()
		}
		for _, fr := range r.ws.Frames(1) { // after its first, synced
			var f obj
			if err := json.Unmarshal(fr.Raw, &f); err != nil || f["type"] != "message" {
				continue
			}
			if q := num(f, "seq"); q != int64(len(r.got)+1) {
				t.Errorf("slow reader %d got seq %d right after seq %d on the same connection: the events in between were dropped, yet the cursor moved past them", i, q, len(r.got))
			}
			r.got[num(f, "seq")]++
			r.cursor = str(f, "cursor")
		}
		if code != 4029 && code != websocket.CloseAbnormalClosure {
			t.Errorf("slow reader %d: connection ended with %d, want 4029 or a TCP close", i, code)
		}
		if len(r.got) == n {
			t.Errorf("slow reader %d got all %d messages (%d MB) before its connection ended", i, n, n*size>>20)
		}
		// It reconnects with its cursor and gets the rest, nothing twice.
		evs, cutoffs := s.catchUp(r.dev, r.cursor)
		if cutoffs > 0 {
			t.Logf("slow reader %d was cut off %d more times while catching up", i, cutoffs)
		}
		for _, e := range evs {
			if e["type"] == "message" {
				r.got[num(e, "seq")]++
			}
		}
		var wrong []string
		for q := int64(1); q <= n; q++ {
			if r.got[q] != 1 {
				wrong = append(wrong, fmt.Sprintf("seq %d ×%d", q, r.got[q]))
			}
		}
		if len(wrong) > 0 {
			t.Errorf("slow reader %d: across reconnections with the last cursor processed, these messages did not arrive exactly once: %v", i, wrong)
		}
	}
}

// A device catching up on a backlog that outruns its socket may be cut off
// (4029) and resume with its cursor; across those reconnections it gets
// every event exactly once, and on each connection the events of a
// conversation come in seq order with nothing left out.
func TestCatchingUpAcrossCutOffsMissesNothing(t *testing.T) {
	t.Parallel()
	s := start(t, "--send-queue", "16")
	const (
		n     = 200
		size  = 60000
		tries = 5
	)
	_, as := s.newUser("alice", 1)
	bob, bs := s.newUser("bob", 1)
	c0 := str(s.must(http.StatusOK, "GET", "/v1/events", bs[0].access, nil), "cursor")
	content := string(slices.Repeat([]byte("x"), size))
	for k := range n {
		s.sendREST(as[0], bob, fmt.Sprintf("m-%d", k), content)
	}
	totalCutoffs := 0
	for try := range tries {
		cursor := c0
		got := map[int64]int{}
		var prev int64 // the last seq processed, across connections
		for conn := 0; ; conn++ {
			if conn > 200 {
				t.Fatal("cut off 200 times while catching up")
			}
			c := s.dial(bs[0].access, cursor)
			c.name = fmt.Sprintf("try %d connection %d", try, conn)
			code := c.syncedOrClosed()
			first := true
			for _, f := range c.snapshot() {
				if f["type"] != "message" {
					continue
				}
				q := num(f, "seq")
				if q != prev+1 {
					where := "on the same connection"
					if first {
						where = "as the first event after reconnecting with the cursor of seq " + strconv.FormatInt(prev, 10)
					}
					t.Errorf("%s (closed with %d) delivered seq %d right after seq %d %s: the events in between were dropped, yet the cursor moved past them", c.name, code, q, prev, where)
				}
				first = false
				prev = q
				got[q]++
				cursor = str(f, "cursor")
			}
			c.close()
			if code == 0 {
				break
			}
			if code != 4029 {
				t.Fatalf("%s: closed with %d while catching up", c.name, code)
			}
			totalCutoffs++
		}
		var wrong []string
		for q := int64(1); q <= n; q++ {
			if got[q] != 1 {
				wrong = append(wrong, fmt.Sprintf("seq %d ×%d", q, got[q]))
			}
		}
		if len(wrong) > 0 {
			t.Errorf("try %d: across reconnections with the last cursor processed, these messages did not arrive exactly once: %v", try, wrong)
		}
		if t.Failed() {
			break
		}
	}
	t.Logf("%d tries, %d cut-offs (4029) of a client reading as fast as it can", tries, totalCutoffs)
}
