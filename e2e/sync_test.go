package e2e

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"
)

// durable reports whether a frame is a durable event (it has a cursor).
func durable(f obj) bool { return str(f, "cursor") != "" && f["type"] != "synced" }

// untilSynced returns the durable events before the first synced frame
// and the synced frame.
func untilSynced(c *wsClient) ([]obj, obj) {
	c.t.Helper()
	synced := c.waitType("synced")
	var evs []obj
	for _, f := range c.snapshot() {
		if f["type"] == "synced" {
			break
		}
		if durable(f) {
			evs = append(evs, f)
		}
	}
	return evs, synced
}

func cmids(evs []obj) []string {
	var out []string
	for _, e := range evs {
		if e["type"] == "message" {
			out = append(out, str(e, "client_message_id"))
		}
	}
	return out
}

func seqList(prefix string, from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, fmt.Sprintf("%s%d", prefix, i))
	}
	return out
}

func TestSyncReplayThenSyncedThenLive(t *testing.T) {
	t.Parallel()
	s := start(t)
	_, as := s.newUser("alice", 1)
	bob, bs := s.newUser("bob", 1)

	// Without a cursor: synced comes first, at once.
	b, _ := s.connect(bs[0], "")
	first := b.snapshot()[0]
	if first["type"] != "synced" || str(first, "cursor") == "" || num(first, "heartbeat_ms") <= 0 {
		t.Fatalf("first frame without a cursor: %v, want synced with cursor and heartbeat_ms", first)
	}
	c0 := str(first, "cursor")
	b.close()

	for i := 1; i <= 5; i++ {
		s.sendREST(as[0], bob, fmt.Sprintf("m%d", i), "hi")
	}
	// With the cursor: the five messages in order, then synced with the
	// last one's cursor, then live events.
	b, _ = s.connect(bs[0], c0)
	evs, synced := untilSynced(b)
	if got := cmids(evs); !slices.Equal(got, seqList("m", 1, 5)) || len(evs) != 5 {
		t.Fatalf("replay %v (%d events), want m1..m5", got, len(evs))
	}
	for i, e := range evs {
		if num(e, "seq") != int64(i+1) {
			t.Errorf("replayed event %d has seq %d", i, num(e, "seq"))
		}
	}
	if synced["cursor"] != evs[4]["cursor"] {
		t.Errorf("synced.cursor %v, want the last event's cursor %v", synced["cursor"], evs[4]["cursor"])
	}
	nSynced := b.mark()
	s.sendREST(as[0], bob, "m6", "live")
	live := b.waitMessage("m6")
	if idx := slices.IndexFunc(b.snapshot(), func(f obj) bool { return f["client_message_id"] == "m6" }); idx < nSynced {
		t.Errorf("live message arrived before synced")
	}
	last := str(live, "cursor")
	b.close()

	// Offline: three more. Reconnecting with the last cursor gives exactly
	// those, nothing twice.
	for i := 7; i <= 9; i++ {
		s.sendREST(as[0], bob, fmt.Sprintf("m%d", i), "while offline")
	}
	b, _ = s.connect(bs[0], last)
	evs, synced = untilSynced(b)
	if got := cmids(evs); !slices.Equal(got, seqList("m", 7, 9)) {
		t.Errorf("after reconnect: %v, want m7..m9 exactly", got)
	}
	if len(evs) > 0 && synced["cursor"] != evs[len(evs)-1]["cursor"] {
		t.Errorf("synced.cursor %v, want %v", synced["cursor"], evs[len(evs)-1]["cursor"])
	}
	// Reconnecting at the newest cursor: synced at once, nothing replayed.
	b.close()
	b, _ = s.connect(bs[0], str(synced, "cursor"))
	if evs, _ := untilSynced(b); len(evs) != 0 {
		t.Errorf("reconnect at the newest cursor replayed %d events", len(evs))
	}
}

func TestSyncedBarrier(t *testing.T) {
	t.Parallel()
	s := start(t)
	_, as := s.newUser("alice", 1)
	bob, bs := s.newUser("bob", 1)
	const n = 60
	c0 := str(s.must(http.StatusOK, "GET", "/v1/events", bs[0].access, nil), "cursor")
	if c0 == "" {
		t.Fatal("long-poll without a cursor gave no cursor")
	}
	conv := s.conversation(as[0], bob)
	fresh := s.login(bob) // a new device, not connected yet
	// Acknowledged concurrently, then connections at once.
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 4 {
				if r, err := s.tryDo("POST", "/v1/messages", as[0].access, sendBody(fmt.Sprintf("b%d", i), bob.id, "x")); err != nil || r.status != http.StatusCreated {
					t.Errorf("send b%d: %v %d %s", i, err, r.status, r.raw)
				}
			}
		}()
	}
	wg.Wait()
	old := s.dial(bs[0].access, c0)
	ws := s.dial(fresh.access, "")

	// The new device, without a cursor: its synced cursor is past all n,
	// and history has them all.
	synced := ws.waitType("synced")
	if h := s.history(fresh, conv); len(h) != n {
		t.Errorf("history after synced has %d messages, want %d", len(h), n)
	}
	lp := s.must(http.StatusOK, "GET", "/v1/events?timeout=0&cursor="+url.QueryEscape(str(synced, "cursor")), fresh.access, nil)
	for _, e := range objs(lp["events"]) {
		if e["type"] == "message" {
			t.Errorf("event after synced.cursor of a new device is one acknowledged before it connected: %v", e)
		}
	}
	ws.close()

	// The old cursor: all n arrive before synced.
	evs, _ := untilSynced(old)
	got := cmids(evs)
	slices.Sort(got)
	want := seqList("b", 0, n-1)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("before synced: %d messages, want the %d acknowledged", len(got), n)
	}
}

func TestLongPollMatchesWebSocket(t *testing.T) {
	t.Parallel()
	s := start(t)
	alice, as := s.newUser("alice", 1)
	bob, bs := s.newUser("bob", 2)

	start := time.Now()
	b := s.must(http.StatusOK, "GET", "/v1/events?timeout=30", bs[0].access, nil)
	if len(objs(b["events"])) != 0 || str(b, "cursor") == "" || time.Since(start) > 10*time.Second {
		t.Fatalf("long-poll without cursor: %v after %s, want no events and a cursor at once", b, time.Since(start))
	}
	c0 := str(b, "cursor")

	for i := 1; i <= 3; i++ {
		s.sendREST(as[0], bob, fmt.Sprintf("p%d", i), "x")
	}
	ids := s.history(bs[0], s.conversation(bs[0], alice))
	s.must(http.StatusOK, "POST", "/v1/messages/"+at(ids, 1).MessageID+"/status", bs[0].access, obj{"status": "read", "timestamp": 1})
	s.sendREST(bs[0], alice, "p4", "reply")
	// The synced barrier covers messages; the receipt event may trail.
	eventually(t, "five events after the cursor", func() bool {
		b := s.must(http.StatusOK, "GET", "/v1/events?timeout=0&cursor="+url.QueryEscape(c0), bs[0].access, nil)
		return len(objs(b["events"])) >= 5
	})

	ws, _ := s.connect(bs[1], c0)
	wsEvs, _ := untilSynced(ws)
	if len(wsEvs) != 5 {
		t.Fatalf("WebSocket replay: %d events, want 5 (3 messages, 1 receipt, 1 own message)", len(wsEvs))
	}
	b = s.must(http.StatusOK, "GET", "/v1/events?timeout=0&cursor="+url.QueryEscape(c0), bs[0].access, nil)
	lpEvs := objs(b["events"])
	key := func(e obj) string {
		return fmt.Sprintf("%s|%s|%s|%d|%s", e["cursor"], e["type"], e["message_id"], num(e, "seq"), e["status"])
	}
	var wk, lk []string
	for _, e := range wsEvs {
		wk = append(wk, key(e))
	}
	for _, e := range lpEvs {
		lk = append(lk, key(e))
	}
	if !slices.Equal(wk, lk) {
		t.Errorf("long-poll events differ from the WebSocket's:\n ws %v\n lp %v", wk, lk)
	}
	last := str(wsEvs[len(wsEvs)-1], "cursor")
	if b["cursor"] != last {
		t.Errorf("long-poll cursor %v, want the last event's %v", b["cursor"], last)
	}

	// Nothing pending: it waits for the timeout, then answers empty.
	start = time.Now()
	b = s.must(http.StatusOK, "GET", "/v1/events?timeout=2&cursor="+url.QueryEscape(last), bs[0].access, nil)
	if el := time.Since(start); el < 1500*time.Millisecond || el > 15*time.Second || len(objs(b["events"])) != 0 || str(b, "cursor") == "" {
		t.Errorf("idle long-poll: %v after %s, want no events after about 2 s", b, el)
	}

	// An event ends the wait at once.
	type answer struct {
		r   resp
		err error
		at  time.Duration
	}
	done := make(chan answer, 1)
	start = time.Now()
	go func() {
		r, err := s.tryDo("GET", "/v1/events?timeout=30&cursor="+url.QueryEscape(last), bs[0].access, nil)
		done <- answer{r, err, time.Since(start)}
	}()
	time.Sleep(300 * time.Millisecond) // let the poll start waiting; passing without it proves less, not more
	s.sendREST(as[0], bob, "p5", "wake up")
	a := <-done
	if a.err != nil || a.r.status != http.StatusOK {
		t.Fatalf("waiting long-poll: %v %d %s", a.err, a.r.status, a.r.raw)
	}
	evs := objs(a.r.body["events"])
	if a.at > 15*time.Second || len(evs) == 0 || evs[0]["client_message_id"] != "p5" {
		t.Errorf("waiting long-poll answered %s after %s, want p5 at once", a.r.raw, a.at)
	}
}

func TestCursorErrors(t *testing.T) {
	t.Parallel()
	s := start(t)
	_, as := s.newUser("alice", 1)
	cur := str(s.must(http.StatusOK, "GET", "/v1/events", as[0].access, nil), "cursor")

	// One character of an issued cursor changed, and another user's
	// cursor: never issued to this user.
	swap := "A"
	if cur[10] == 'A' {
		swap = "B"
	}
	_, bs := s.newUser("bob", 1)
	bobCur := str(s.must(http.StatusOK, "GET", "/v1/events", bs[0].access, nil), "cursor")
	for _, bad := range []string{"garbage!", "-1", "1.5", cur[:10] + swap + cur[11:], bobCur} {
		wantError(t, s.do("GET", "/v1/events?timeout=0&cursor="+url.QueryEscape(bad), as[0].access, nil), http.StatusBadRequest, "bad_request")
		ws := s.dial(as[0].access, bad)
		ws.name = "garbage cursor " + bad
		if e := ws.waitType("error"); num(e, "status") != 400 || e["code"] != "bad_request" {
			t.Errorf("WebSocket with cursor %q: %v, want error 400 bad_request", bad, e)
		}
		if ws.count(isType("synced")) != 0 {
			t.Errorf("WebSocket with cursor %q got synced", bad)
		}
	}

	// A cursor natter never gave out, past the newest event. Cursors are
	// opaque to clients; the test knows natter still reads its first,
	// decimal format to build one.
	future := "1000000000"
	// The contract: "a cursor that was never issued gets 400 bad_request"
	// (410 is for cursors older than the retained events).
	wantError(t, s.do("GET", "/v1/events?timeout=0&cursor="+future, as[0].access, nil), http.StatusBadRequest, "bad_request")
	ws := s.dial(as[0].access, future)
	ws.name = "future cursor"
	if e := ws.waitType("error"); num(e, "status") != 400 || e["code"] != "bad_request" {
		t.Errorf("WebSocket with a future cursor: %v, want error 400 bad_request", e)
	}
	if code := ws.waitClosed(wait); code == 4010 || code == 0 {
		t.Errorf("WebSocket with a future cursor closed with %d, want a close that does not say \"cursor expired\"", code)
	}
	if ws.count(isType("synced")) != 0 {
		t.Error("WebSocket with a future cursor got synced")
	}
}
