package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go"

	"github.com/natter-chat/natter/chat"
	"github.com/natter-chat/natter/schema"
)

// A WebSocket session depends on sessionCore and wsConn only, so it is
// tested here without an HTTP server, a NATS server or a store: pipeConn
// plays the client's socket, stubCore the application.

type pipeConn struct {
	in     chan []byte // frames from the client
	out    chan []byte // frames to the client
	closed chan int    // the close code the session sent
	once   sync.Once
	gone   chan struct{}
}

func newPipeConn() *pipeConn {
	return &pipeConn{in: make(chan []byte, 16), out: make(chan []byte, 64), closed: make(chan int, 1), gone: make(chan struct{})}
}

func (c *pipeConn) NextReader() (int, io.Reader, error) {
	select {
	case f, ok := <-c.in:
		if !ok {
			return 0, nil, io.EOF
		}
		return websocket.TextMessage, bytes.NewReader(f), nil
	case <-c.gone:
		return 0, nil, io.EOF
	}
}

func (c *pipeConn) WriteMessage(_ int, data []byte) error {
	select {
	case c.out <- append([]byte(nil), data...):
		return nil
	case <-c.gone:
		return io.ErrClosedPipe
	}
}

func (c *pipeConn) WriteControl(t int, data []byte, _ time.Time) error {
	if t == websocket.CloseMessage {
		code := 0
		if len(data) >= 2 {
			code = int(data[0])<<8 | int(data[1])
		}
		select {
		case c.closed <- code:
		default:
		}
	}
	return nil
}

func (c *pipeConn) SetReadDeadline(time.Time) error   { return nil }
func (c *pipeConn) SetWriteDeadline(time.Time) error  { return nil }
func (c *pipeConn) SetPongHandler(func(string) error) {}
func (c *pipeConn) SetReadLimit(int64)                {}
func (c *pipeConn) Close() error {
	c.once.Do(func() { close(c.gone) })
	return nil
}

type stubSub struct{}

func (stubSub) Dropped() (int, error) { return 0, nil }
func (stubSub) Unsubscribe() error    { return nil }

type stubCore struct {
	pointErr error
	point    chan struct{} // when set, SyncPoint waits for it to close
	stored   [][]byte      // events 1..n of the user
	sends    []schema.SendRequest
	mu       sync.Mutex
}

func (s *stubCore) Send(_ context.Context, c chat.Claims, req *schema.SendRequest) (schema.Ack, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if req.RecipientID == "blocker" {
		return schema.Ack{}, chat.Errorf(schema.CodeBlocked, "one of you has blocked the other")
	}
	s.sends = append(s.sends, *req)
	return schema.Ack{ClientMessageID: req.ClientMessageID, MessageID: "d1-1", ConversationID: "d1", Seq: int64(len(s.sends)), Status: "sent"}, nil
}
func (s *stubCore) SetStatus(context.Context, chat.Claims, string, string) error { return nil }
func (s *stubCore) Typing(context.Context, string, string, string) error         { return nil }
func (s *stubCore) Presence(_ context.Context, _, id string) schema.Presence {
	return schema.Presence{Type: schema.TypePresence, UserID: id, Status: "offline"}
}
func (s *stubCore) SyncPoint(_ context.Context, _, cursor string) (uint64, uint64, error) {
	if s.point != nil {
		<-s.point
	}
	if s.pointErr != nil {
		return 0, 0, s.pointErr
	}
	var from uint64
	if cursor != "" {
		from = 1 // the tests connect with cursor "1"
	}
	return uint64(len(s.stored)), from, nil
}
func (s *stubCore) Scan(_ context.Context, _ string, after, upTo uint64, _ bool, fn func(uint64, []byte) error) (uint64, error) {
	last := after
	for i := after + 1; i <= uint64(len(s.stored)) && (upTo == 0 || i <= upTo); i++ {
		if err := fn(i, chat.WithCursor(s.stored[i-1], s.Cursors("")(i))); err != nil {
			return last, err
		}
		last = i
	}
	return last, nil
}
func (s *stubCore) Cursors(string) func(uint64) string {
	return func(seq uint64) string { return strconv.FormatUint(seq, 10) }
}
func (s *stubCore) Subscribe(string, chan *nats.Msg) (liveSub, error)    { return stubSub{}, nil }
func (s *stubCore) Generation() uint64                                   { return 0 }
func (s *stubCore) Allow(string, string) error                           { return nil }
func (s *stubCore) NewPresenceSub(string, func([]byte) bool) presenceSub { return stubPresence{} }

type stubPresence struct{}

func (stubPresence) Subscribe(context.Context, []string, func(schema.Presence)) error { return nil }
func (stubPresence) Unsubscribe([]string)                                             {}
func (stubPresence) Close()                                                           {}

func startSession(t *testing.T, core *stubCore, cursor string) (*session, *pipeConn) {
	t.Helper()
	conn := newPipeConn()
	s := newSession(core, conn, chat.Claims{UserID: "u1", DeviceID: "dev1", Expires: time.Now().Add(time.Hour)},
		sessionConfig{Heartbeat: time.Hour, ReadLimit: 1 << 16, SendQueue: 16})
	done := make(chan struct{})
	go func() { defer close(done); s.run(cursor) }()
	t.Cleanup(func() {
		s.close(closeNormal, "")
		_ = conn.Close()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Error("session did not end")
		}
	})
	return s, conn
}

func next(t *testing.T, conn *pipeConn) map[string]any {
	t.Helper()
	select {
	case f := <-conn.out:
		var m map[string]any
		if err := json.Unmarshal(f, &m); err != nil {
			t.Fatalf("frame %s: %v", f, err)
		}
		return m
	case <-time.After(20 * time.Second):
		t.Fatal("no frame from the session")
		return nil
	}
}

func TestSessionReplaysThenSyncsThenAnswersFrames(t *testing.T) {
	core := &stubCore{stored: [][]byte{[]byte(`{"type":"message","seq":1}`), []byte(`{"type":"message","seq":2}`), []byte(`{"type":"receipt","seq":2}`)}}
	_, conn := startSession(t, core, "1")
	// Events after cursor 1, in order, each with its cursor; then synced.
	for _, want := range []string{"2", "3"} {
		if ev := next(t, conn); ev["cursor"] != want {
			t.Fatalf("replayed %v, want cursor %s", ev, want)
		}
	}
	if ev := next(t, conn); ev["type"] != "synced" || ev["cursor"] != "3" {
		t.Fatalf("after the replay: %v, want synced at 3", ev)
	}

	conn.in <- []byte(`{"type":"send","ref":"r1","client_message_id":"c1","recipient_id":"u2","message_type":"user","content":"hi","timestamp":1}`)
	if ack := next(t, conn); ack["type"] != "ack" || ack["ref"] != "r1" || ack["client_message_id"] != "c1" {
		t.Fatalf("send answered %v", ack)
	}
	// A refusal from chat becomes the table's status with the frame's ref,
	// and the connection stays open.
	conn.in <- []byte(`{"type":"send","ref":"r2","client_message_id":"c2","recipient_id":"blocker","message_type":"user","content":"hi","timestamp":1}`)
	if e := next(t, conn); e["type"] != "error" || e["status"] != 403.0 || e["code"] != "blocked" || e["ref"] != "r2" {
		t.Fatalf("blocked send answered %v", e)
	}
	conn.in <- []byte(`{"type":"ping","ref":"p"}`)
	if p := next(t, conn); p["type"] != "pong" || p["ref"] != "p" {
		t.Fatalf("ping answered %v", p)
	}
	if len(core.sends) != 1 {
		t.Fatalf("%d sends reached chat, want 1", len(core.sends))
	}
}

// The reader answers the bare ping itself only while the writer waits:
// a ping read during the replay is answered after synced, not in the
// middle of the replay or before it.
func TestSessionPongWaitsForSynced(t *testing.T) {
	core := &stubCore{stored: [][]byte{[]byte(`{"type":"message","seq":1}`), []byte(`{"type":"message","seq":2}`)}, point: make(chan struct{})}
	s, conn := startSession(t, core, "1")
	conn.in <- pingFrame
	for deadline := time.Now().Add(20 * time.Second); s.out.len() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the ping was not answered or queued")
		}
	}
	close(core.point)
	for _, want := range []string{"message", "synced", "pong"} {
		if f := next(t, conn); f["type"] != want {
			t.Fatalf("got %v, want a %s", f, want)
		}
	}
	// Once the writer waits, the reader answers at once.
	conn.in <- pingFrame
	if f := next(t, conn); f["type"] != "pong" {
		t.Fatalf("got %v, want a pong", f)
	}
}

func TestPingDueAllowsAClientsTimerJitter(t *testing.T) {
	now := time.Now()
	for _, c := range []struct {
		heartbeat, silence, quiet time.Duration
		due                       bool
	}{
		{25 * time.Second, 30 * time.Second, 24 * time.Second, false},
		{25 * time.Second, 30 * time.Second, 26 * time.Second, false}, // a client pinging every 25 s, a little late
		{25 * time.Second, 30 * time.Second, 28 * time.Second, true},
		{25 * time.Second, 25 * time.Second, 26 * time.Second, true}, // no room for slack: every heartbeat
		{time.Second, time.Second, 1100 * time.Millisecond, true},
	} {
		s := &session{cfg: sessionConfig{Heartbeat: c.heartbeat, Silence: c.silence}}
		s.heard.Store(now.Add(-c.quiet).UnixNano())
		if got := s.pingDue(now); got != c.due {
			t.Errorf("heartbeat %v, silence %v, quiet for %v: ping due %v, want %v", c.heartbeat, c.silence, c.quiet, got, c.due)
		}
	}
}

func TestSessionClosesWithTheCodeOfAConnectError(t *testing.T) {
	for _, tc := range []struct {
		err    error
		status float64
		close  int
	}{
		{chat.ErrCursorExpired, 410, closeCursorExpired},
		{chat.Errorf(schema.CodeBadRequest, "bad cursor"), 400, closePolicy},
		{chat.Unavailable(errors.New("down"), time.Second, "the log is down", chat.RetryConnect), 503, closeGoingAway},
	} {
		_, conn := startSession(t, &stubCore{pointErr: tc.err}, "7")
		if e := next(t, conn); e["type"] != "error" || e["status"] != tc.status {
			t.Fatalf("%v: first frame %v, want an error %v", tc.err, e, tc.status)
		}
		select {
		case code := <-conn.closed:
			if code != tc.close {
				t.Fatalf("%v: closed with %d, want %d", tc.err, code, tc.close)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("%v: not closed", tc.err)
		}
	}
}

func TestSessionClosedByChatGetsTheReasonsCode(t *testing.T) {
	s, conn := startSession(t, &stubCore{}, "")
	if ev := next(t, conn); ev["type"] != "synced" {
		t.Fatalf("first frame %v, want synced", ev)
	}
	s.Close(chat.CloseRevoked)
	s.Close(chat.CloseShutdown) // a second close changes nothing
	select {
	case code := <-conn.closed:
		if code != closeUnauthorized {
			t.Fatalf("revoked session closed with %d, want %d", code, closeUnauthorized)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("not closed")
	}
}

// batchPipe is a pipeConn that is also the session's frame batcher: it
// records which frames were written inside a batch and how many batches
// were flushed.
type batchPipe struct {
	*pipeConn
	mu              sync.Mutex
	holding         bool
	held, unheld    int
	flushes, frames int
}

func (c *batchPipe) Hold() { c.mu.Lock(); c.holding = true; c.mu.Unlock() }
func (c *batchPipe) Flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.holding && c.frames > 0 {
		c.flushes++
	}
	c.holding, c.frames = false, 0
	return nil
}
func (c *batchPipe) WriteMessage(t int, data []byte) error {
	c.mu.Lock()
	if c.holding {
		c.held++
		c.frames++
	} else {
		c.unheld++
	}
	c.mu.Unlock()
	return c.pipeConn.WriteMessage(t, data)
}

// Answers already queued when the writer wakes go out in one batch, in
// order; the synced frame of an empty replay is a batch of its own.
func TestSessionWritesReadyFramesAsOneBatch(t *testing.T) {
	conn := &batchPipe{pipeConn: newPipeConn()}
	s := newSession(&stubCore{}, conn, chat.Claims{UserID: "u1", DeviceID: "dev1", Expires: time.Now().Add(time.Hour)},
		sessionConfig{Heartbeat: time.Hour, ReadLimit: 1 << 16, SendQueue: 16, batch: conn})
	for i := range 5 {
		s.out.push([]byte(`{"type":"pong","ref":"`+string(rune('a'+i))+`"}`), false, nil)
	}
	done := make(chan struct{})
	go func() { defer close(done); s.run("") }()
	t.Cleanup(func() {
		s.close(closeNormal, "")
		_ = conn.Close()
		<-done
	})
	if ev := next(t, conn.pipeConn); ev["type"] != "synced" {
		t.Fatalf("first frame %v, want synced", ev)
	}
	for i := range 5 {
		if p := next(t, conn.pipeConn); p["ref"] != string(rune('a'+i)) {
			t.Fatalf("answer %d is %v", i, p)
		}
	}
	conn.mu.Lock()
	defer conn.mu.Unlock()
	if conn.held != 6 || conn.unheld != 0 || conn.flushes != 2 {
		t.Fatalf("%d frames held, %d not, %d batches; want 6 held (synced, then the 5 answers) in 2 batches", conn.held, conn.unheld, conn.flushes)
	}
}

// The pinger asks a quiet session's writer for one ping per heartbeat and
// leaves a talking one alone.
func TestPingerAsksQuietSessionsOnly(t *testing.T) {
	const hb = 25 * time.Second
	p := newPinger(hb)
	cfg := sessionConfig{Heartbeat: hb, Silence: 30 * time.Second}
	quiet := newSession(&stubCore{}, newPipeConn(), chat.Claims{}, cfg)
	talking := newSession(&stubCore{}, newPipeConn(), chat.Claims{}, cfg)
	p.add(quiet)
	p.add(talking)
	start := time.Now()
	quiet.heard.Store(start.UnixNano())
	asked := func(s *session) bool {
		select {
		case <-s.pingNow:
			return true
		default:
			return false
		}
	}
	var pings int
	for now := start; now.Before(start.Add(100 * time.Second)); now = now.Add(p.every) {
		talking.heard.Store(now.Add(-time.Second).UnixNano())
		p.sweep(now)
		if asked(quiet) {
			pings++
		}
		if asked(talking) {
			t.Fatalf("a talking client was pinged at +%v", now.Sub(start))
		}
	}
	// The first sweep past a heartbeat and its slack (+28 s), then every
	// heartbeat: +53 s, +78 s.
	if pings != 3 {
		t.Fatalf("%d pings to a quiet client in 100 s, want 3", pings)
	}
	p.remove(quiet)
	p.sweep(start.Add(200 * time.Second))
	if asked(quiet) {
		t.Fatal("a removed session was pinged")
	}
}
