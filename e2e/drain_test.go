package e2e

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/natter-chat/natter/internal/testnode"
)

// A graceful drain (SIGTERM): /readyz says "draining" at once, the
// listener closes, a client that answers the 1001 is let go at once, one
// that never answers is cut at --drain-timeout and not before, and the
// process exits 0 right after.
func TestDrainReadinessTimeoutAndExit(t *testing.T) {
	t.Parallel()
	admin, err := testnode.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	const drainTimeout = 4 * time.Second
	s := start(t, "--drain-timeout", drainTimeout.String(), "--admin-http", admin)
	_, as := s.newUser("alice", 2)
	polite, _ := s.connect(as[0], "")

	// A client that never reads: it never sees the 1001, so it never
	// answers it, and only the drain timeout ends its connection.
	u := url.URL{Scheme: "ws", Host: s.addr, Path: "/v1/ws", RawQuery: "access_token=" + url.QueryEscape(as[1].access)}
	stubborn, _, err := websocket.DefaultDialer.Dial(u.String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer stubborn.Close()
	// The upgrade is answered before the session is registered: a SIGTERM
	// in between refuses the session at once, and nothing holds the drain.
	s.waitConnections(t, admin, "websocket", 2) // /metrics is on the admin listener
	// Its bytes read raw (no WebSocket reader, so no close answer): the
	// read fails when natter closes the TCP connection.
	cutAt := make(chan time.Time, 1)
	var seen strings.Builder
	go func() {
		nc := stubborn.NetConn()
		_ = nc.SetReadDeadline(time.Now().Add(3 * wait))
		buf := make([]byte, 4096)
		for {
			n, err := nc.Read(buf)
			seen.Write(buf[:n])
			if err != nil {
				cutAt <- time.Now()
				return
			}
		}
	}()
	readyz := func() resp {
		res, err := http.Get("http://" + admin + "/readyz")
		if err != nil {
			t.Fatalf("admin /readyz: %v", err)
		}
		defer res.Body.Close()
		raw, _ := io.ReadAll(res.Body)
		return resp{status: res.StatusCode, raw: raw}
	}
	eventually(t, "/readyz 200 before the drain", func() bool { return readyz().status == http.StatusOK })

	began := time.Now()
	exited := s.signal(syscall.SIGTERM)
	eventually(t, "/readyz 503 draining after SIGTERM", func() bool {
		r := readyz()
		return r.status == http.StatusServiceUnavailable && strings.Contains(string(r.raw), `"draining"`)
	})
	if code := polite.waitClosed(wait); code != websocket.CloseGoingAway {
		t.Errorf("close code %d on SIGTERM, want 1001", code)
	}
	if _, text := polite.ws.CloseCode(); !strings.Contains(text, "reconnect") {
		t.Errorf("1001's reason %q does not tell the client to reconnect", text)
	}
	politeGone := time.Since(began)
	// Still draining (the stubborn client holds it): not ready, and no
	// new connection is taken.
	if r := readyz(); r.status != http.StatusServiceUnavailable {
		t.Errorf("/readyz during the drain: %d %s, want 503", r.status, r.raw)
	}
	if c, err := net.DialTimeout("tcp", s.addr, time.Second); err == nil {
		c.Close()
		t.Errorf("a new connection to %s was accepted during the drain", s.addr)
	}

	var cut time.Time
	select {
	case cut = <-cutAt:
	case <-time.After(drainTimeout + wait):
		t.Fatalf("the client that never closed was not cut %s after SIGTERM (drain timeout %s)", time.Since(began), drainTimeout)
	}
	if d := cut.Sub(began); d < drainTimeout-200*time.Millisecond {
		t.Errorf("the client that never closed was cut %s after SIGTERM, before the %s drain timeout", d, drainTimeout)
	}
	if !strings.Contains(seen.String(), "reconnect") {
		t.Errorf("the stubborn client's bytes hold no 1001 reason: %q", seen.String())
	}
	select {
	case <-exited:
	case <-time.After(wait):
		t.Fatalf("natter still running %s after SIGTERM", time.Since(began))
	}
	if st := s.exitState(); !st.Success() {
		t.Errorf("natter exited with %v after a clean drain, want 0", st)
	}
	if !strings.Contains(s.node.Log(), "drain timeout: closed the connections still open") {
		t.Errorf("the log does not say that the drain timeout cut a connection")
	}
	t.Logf("polite client closed %s after SIGTERM, stubborn one cut after %s, exit after %s",
		politeGone.Round(time.Millisecond), cut.Sub(began).Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
}

// Sends pipelined on a WebSocket when SIGTERM arrives: every frame natter
// handled is answered (ack) before the 1001; every frame after the drain
// began is refused (503) or never read, and changes nothing; so nothing
// stored lacks an ack. After a restart each acked message is delivered
// to the peer's device from its cursor, and the client's retries of the
// rest store each once.
func TestDrainAnswersSendsInFlight(t *testing.T) {
	t.Parallel()
	s := start(t)
	_, as := s.newUser("alice", 1)
	bob, bs := s.newUser("bob", 1)
	_, synced := s.connect(bs[0], "")
	bobCursor := str(synced, "cursor")
	a, _ := s.connect(as[0], "")

	const n = 400
	cmid := func(i int) string { return fmt.Sprintf("drain-%03d", i) }
	sent := make(chan struct{})
	go func() { // pipelined: no send waits for its ack
		defer close(sent)
		for i := range n {
			f := sendBody(cmid(i), bob.id, "in flight")
			f["type"] = "send"
			if a.trySend(f) != nil {
				return // closed under us: the rest were never sent
			}
		}
	}()
	// SIGTERM while sends are being handled and more keep coming.
	a.waitN("acks before SIGTERM", 10, isType("ack"))
	s.signal(syscall.SIGTERM)
	if code := a.waitClosed(wait); code != websocket.CloseGoingAway {
		t.Fatalf("close code %d, want 1001", code)
	}
	<-sent
	select {
	case <-s.node.Exited():
	case <-time.After(wait):
		t.Fatal("natter did not exit after SIGTERM")
	}
	if st := s.exitState(); !st.Success() {
		t.Errorf("natter exited with %v, want 0", st)
	}

	acked, refused := map[string]bool{}, map[string]bool{}
	for _, f := range a.snapshot() {
		switch f["type"] {
		case "ack":
			acked[str(f, "ref")] = true
		case "error":
			if num(f, "status") != http.StatusServiceUnavailable || f["code"] != "unavailable" {
				t.Errorf("a send during the drain was answered %v, want 503 unavailable", f)
			}
			refused[str(f, "ref")] = true
		}
	}
	if len(acked) == 0 {
		t.Fatal("no send was acknowledged")
	}
	t.Logf("%d acked, %d refused, %d unanswered", len(acked), len(refused), n-len(acked)-len(refused))

	s.restart()
	stored := map[string]bool{}
	for _, m := range s.history(as[0], s.conversation(as[0], bob)) {
		stored[m.ClientMessageID] = true
	}
	for id := range acked {
		if !stored[id] {
			t.Errorf("acked %s is not in the history after the restart", id)
		}
	}
	for id := range stored {
		if !acked[id] {
			t.Errorf("%s is stored but was never acked (a send handled during the drain lost its answer)", id)
		}
	}
	// Bob's device resumes from its cursor: every acked message once.
	evs, _ := s.catchUp(bs[0], bobCursor)
	got := map[string]int{}
	for _, e := range evs {
		if e["type"] == "message" {
			got[str(e, "client_message_id")]++
		}
	}
	for id := range acked {
		if got[id] != 1 {
			t.Errorf("acked %s delivered %d times to bob after the restart, want 1", id, got[id])
		}
	}
	// Alice's client retries what was not acked, as the contract says.
	for i := range n {
		if id := cmid(i); !acked[id] {
			if r := s.sendREST(as[0], bob, id, "retried"); r["duplicate"] == true {
				t.Errorf("retry of unacked %s is a duplicate: it was stored without an ack", id)
			}
		}
	}
	h := s.history(as[0], s.conversation(as[0], bob))
	if len(h) != n {
		t.Errorf("history holds %d messages after the retries, want %d", len(h), n)
	}
	for i, m := range h {
		if want := int64(len(h) - i); m.Seq != want { // newest first
			t.Errorf("history[%d] has seq %d, want %d (gap-free)", i, m.Seq, want)
			break
		}
	}
}

// A long-poll waiting at SIGTERM answers at once (an empty batch and its
// cursor), so the client polls again elsewhere; the drain does not wait
// for its 60 s.
func TestDrainAnswersLongPolls(t *testing.T) {
	t.Parallel()
	s := start(t, "--drain-timeout", "30s")
	_, as := s.newUser("alice", 1)
	cur := str(s.must(http.StatusOK, "GET", "/v1/events", as[0].access, nil), "cursor")
	type answer struct {
		r   resp
		err error
	}
	polled := make(chan answer, 1)
	go func() {
		r, err := s.tryDo("GET", "/v1/events?timeout=60&cursor="+url.QueryEscape(cur), as[0].access, nil)
		polled <- answer{r, err}
	}()
	s.waitConnections(t, s.addr, "longpoll", 1)
	began := time.Now()
	exited := s.signal(syscall.SIGTERM)
	select {
	case a := <-polled:
		if a.err != nil || a.r.status != http.StatusOK {
			t.Fatalf("long-poll at SIGTERM: %v %d %s, want 200", a.err, a.r.status, a.r.raw)
		}
		if evs, _ := a.r.body["events"].([]any); len(evs) != 0 || str(a.r.body, "cursor") == "" {
			t.Errorf("long-poll at SIGTERM answered %s, want no events and a cursor", a.r.raw)
		}
	case <-time.After(wait):
		t.Fatal("the long-poll got no answer after SIGTERM")
	}
	if d := time.Since(began); d > 10*time.Second {
		t.Errorf("the long-poll was answered %s after SIGTERM", d)
	}
	select {
	case <-exited:
	case <-time.After(wait):
		t.Fatal("natter did not exit after SIGTERM")
	}
	if st := s.exitState(); !st.Success() {
		t.Errorf("natter exited with %v, want 0", st)
	}
}

// A second signal during the drain closes at once, says so in the log,
// and exits non-zero (the drain was not clean).
func TestDrainSecondSignalClosesAtOnce(t *testing.T) {
	t.Parallel()
	s := start(t, "--drain-timeout", "2m")
	_, as := s.newUser("alice", 1)
	u := url.URL{Scheme: "ws", Host: s.addr, Path: "/v1/ws", RawQuery: "access_token=" + url.QueryEscape(as[0].access)}
	stubborn, _, err := websocket.DefaultDialer.Dial(u.String(), nil) // never reads: holds the drain
	if err != nil {
		t.Fatal(err)
	}
	defer stubborn.Close()
	s.waitConnections(t, s.addr, "websocket", 1) // registered: it holds the drain
	exited := s.signal(syscall.SIGTERM)
	s.waitLog("draining: clients are told to reconnect elsewhere", 1)
	began := time.Now()
	s.signal(syscall.SIGINT)
	select {
	case <-exited:
	case <-time.After(wait):
		t.Fatal("natter still running after a second signal during the drain")
	}
	if st := s.exitState(); st.Success() {
		t.Errorf("natter exited 0 after a forced drain, want non-zero")
	}
	if !strings.Contains(s.node.Log(), "second signal during the drain: closing at once") {
		t.Error("the log does not say that the second signal closed at once")
	}
	t.Logf("exited %s after the second signal", time.Since(began).Round(time.Millisecond))
}

// waitConnections waits until natter counts n open sessions of transport
// (the /metrics gauge served at addr).
func (s *server) waitConnections(t *testing.T, addr, transport string, n int) {
	t.Helper()
	want := fmt.Sprintf("natter_connections{transport=%q} %d", transport, n)
	eventually(t, want, func() bool {
		res, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return false
		}
		defer res.Body.Close()
		raw, _ := io.ReadAll(res.Body)
		return strings.Contains(string(raw), want)
	})
}

// A client still sending when natter closes its session, and slow to
// read, gets the close code all the same: natter reads on (and drops) the
// frames that come after its close frame until the client answers it.
// Closing the socket with them unread would be a TCP reset, which
// destroys the close frame and the last answers before the client reads
// them (1006: CI saw it once in TestDrainAnswersSendsInFlight).
func TestCloseReachesAClientStillSending(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		code  int
		close func(s *server, other device, dev string)
	}{
		{"drain", websocket.CloseGoingAway, func(s *server, _ device, _ string) { s.signal(syscall.SIGTERM) }},
		{"revoked", 4001, func(s *server, other device, dev string) {
			s.must(http.StatusOK, "DELETE", "/v1/me/devices/"+dev, other.access, nil)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := start(t)
			_, as := s.newUser("alice", 2)
			code, pongs, pings := closeUnderPings(t, s, as[0], func() { tc.close(s, as[1], as[0].deviceID) })
			if code != tc.code {
				t.Errorf("close code %d after %d pongs (of %d pings), want %d", code, pongs, pings, tc.code)
			}
			if pongs == 0 {
				t.Errorf("no pong before the close frame (%d pings sent)", pings)
			}
			t.Logf("%d pings sent, %d pongs, then close %d", pings, pongs, code)
		})
	}
}

// closeUnderPings connects d with a small receive buffer, pings every
// millisecond for 1.5 s without reading, calls closeIt half a second in,
// then reads: the pongs that came and the close code.
func closeUnderPings(t *testing.T, s *server, d device, closeIt func()) (code, pongs, pings int) {
	t.Helper()
	u := url.URL{Scheme: "ws", Host: s.addr, Path: "/v1/ws", RawQuery: "access_token=" + url.QueryEscape(d.access)}
	// The pongs natter writes while the client does not read soon fill
	// the small buffer, so natter's close frame waits in its send queue,
	// where a reset discards it.
	small := &net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 2048) })
	}}
	dialer := websocket.Dialer{NetDialContext: small.DialContext, HandshakeTimeout: wait}
	c, _, err := dialer.Dial(u.String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(wait))
	for { // synced: the session is registered, so the close reaches it
		_, raw, err := c.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(raw), `"synced"`) {
			break
		}
	}
	stop := time.Now().Add(1500 * time.Millisecond)
	sent := make(chan int, 1)
	go func() {
		n := 0
		for time.Now().Before(stop) {
			if c.WriteMessage(websocket.TextMessage, []byte(`{"type":"ping"}`)) != nil {
				break
			}
			n++
			time.Sleep(time.Millisecond)
		}
		sent <- n
	}()
	time.Sleep(500 * time.Millisecond) // the client's buffer is full by now
	closeIt()
	pings = <-sent // the client read nothing in the second after closeIt
	for {
		_, raw, err := c.ReadMessage()
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return ce.Code, pongs, pings
		}
		if err != nil {
			t.Fatalf("after %d pongs (of %d pings): %v, want a close frame", pongs, pings, err)
		}
		if string(raw) == `{"type":"pong"}` {
			pongs++
		}
	}
}
