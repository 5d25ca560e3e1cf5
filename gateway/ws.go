package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go"

	"github.com/natter-chat/natter/chat"
	"github.com/natter-chat/natter/schema"
	"github.com/natter-chat/natter/streams"
)

var upgrader = websocket.Upgrader{
	ReadBufferSize:  1024,
	WriteBufferSize: 1024,
	// Idle connections hold no write buffer.
	WriteBufferPool: &sync.Pool{},
	// Origin is checked before Upgrade, with a JSON answer.
	CheckOrigin: func(*http.Request) bool { return true },
	Error: func(w http.ResponseWriter, _ *http.Request, status int, reason error) {
		code := schema.CodeBadRequest
		if status >= 500 {
			code = schema.CodeInternal
		}
		writeError(w, chat.Errorf(code, "websocket upgrade: %v", reason))
	},
}

// originAllowed accepts non-browser clients (no Origin), the server's own
// origin and the configured ones.
func (g *Gateway) originAllowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err == nil && strings.EqualFold(u.Host, r.Host) {
		return true
	}
	return slices.Contains(g.cfg.AllowedOrigins, origin)
}

func (g *Gateway) handleWS(w http.ResponseWriter, r *http.Request) {
	if !g.originAllowed(r) {
		writeError(w, chat.Errorf(schema.CodeForbidden, "origin %q is not allowed", r.Header.Get("Origin")))
		return
	}
	token := bearer(r)
	if token == "" {
		token = r.URL.Query().Get("access_token")
	}
	claims, err := g.authenticate(token)
	if err != nil {
		writeError(w, err)
		return
	}
	release, err := g.wsCap.acquire(claims.UserID)
	if err != nil {
		writeError(w, err)
		return
	}
	bw := &batchingWriter{ResponseWriter: w}
	conn, err := upgrader.Upgrade(bw, r, nil)
	if err != nil {
		release()
		return // Upgrade answered the client
	}
	var batch frameBatcher
	if bw.conn != nil {
		batch = bw.conn
	}
	if !g.startSession(conn, batch, claims, r.URL.Query().Get("cursor"), &g.counters.websockets, release) {
		release()
	}
}

// startSession runs a session over conn on a goroutine the gateway owns
// (Close waits for it); false when the gateway is shutting down. batch
// (nil: none) puts ready frames in one socket write; open counts the
// transport's sessions; onEnd runs when the session is over.
func (g *Gateway) startSession(conn wsConn, batch frameBatcher, claims chat.Claims, cursor string, open *atomic.Int64, onEnd func()) bool {
	s := newSession(coreAdapter{g.core}, conn, claims, sessionConfig{
		Heartbeat: g.cfg.Heartbeat, Silence: g.cfg.PresenceTimeout, ReadLimit: g.cfg.ReadLimit, SendQueue: g.cfg.SendQueue,
		stacks: g.stacks, logUnavailable: g.logUnavailable, framesOut: &g.counters.wsFrames, batch: batch,
		cut: g.drain.cut,
	})
	if !g.core.Sessions.Add(s) {
		s.close(closeGoingAway, "server shutting down: reconnect")
		s.writeClose()
		_ = conn.Close()
		close(s.done)
		return false
	}
	// The session runs on its own goroutine so an HTTP handler returns:
	// net/http's per-connection buffers (6 KiB) are then freed instead of
	// living as long as the socket.
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		defer close(s.done)
		if onEnd != nil {
			defer onEnd()
		}
		defer g.core.Sessions.Remove(s)
		g.pinger.add(s)
		defer g.pinger.remove(s)
		open.Add(1)
		defer open.Add(-1)
		s.run(cursor)
	}()
	return true
}

// sessionCore is what a WebSocket session needs of chat: narrow, so that a
// session can be tested without a server, and so that another transport
// sees what the WebSocket one relies on.
type sessionCore interface {
	Send(ctx context.Context, c chat.Claims, req *schema.SendRequest) (schema.Ack, error)
	SetStatus(ctx context.Context, c chat.Claims, messageID, status string) error
	Typing(ctx context.Context, userID, conv, state string) error
	Presence(ctx context.Context, viewer, userID string) schema.Presence
	// SyncPoint, Cursors and Scan: see chat.Sync.Point, chat.Sync.CursorsFor
	// and chat.Sync.Scan.
	SyncPoint(ctx context.Context, user, cursor string) (pos, from uint64, err error)
	Cursors(user string) func(seq uint64) string
	Scan(ctx context.Context, user string, after, upTo uint64, redact bool, fn func(seq uint64, event []byte) error) (uint64, error)
	// Subscribe delivers user's live events to ch.
	Subscribe(user string, ch chan *nats.Msg) (liveSub, error)
	// Generation changes when live events may have been lost (a NATS
	// reconnection).
	Generation() uint64
	// Allow takes a token of a frame kind's per-user rate limit (see
	// chat.Limits); send, receipt, typing and delete are limited in chat.
	Allow(kind, userID string) error
	// NewPresenceSub starts viewer's empty presence subscription set;
	// deliver must not block.
	NewPresenceSub(viewer string, deliver func(event []byte) bool) presenceSub
}

// presenceSub is a connection's presence subscriptions (chat.PresenceSub).
type presenceSub interface {
	Subscribe(ctx context.Context, ids []string, emit func(schema.Presence)) error
	Unsubscribe(ids []string)
	Close()
}

// liveSub is a live subscription: how many events it had to drop.
type liveSub interface {
	Dropped() (int, error)
	Unsubscribe() error
}

// coreAdapter is sessionCore over chat's services.
type coreAdapter struct{ c *chat.Core }

func (a coreAdapter) Send(ctx context.Context, c chat.Claims, req *schema.SendRequest) (schema.Ack, error) {
	return a.c.Messages.Send(ctx, c, req)
}

func (a coreAdapter) SetStatus(ctx context.Context, c chat.Claims, messageID, status string) error {
	_, err := a.c.Messages.SetStatus(ctx, c, messageID, status)
	return err
}

func (a coreAdapter) Typing(ctx context.Context, userID, conv, state string) error {
	return a.c.Presence.Typing(ctx, userID, conv, state)
}

func (a coreAdapter) Presence(ctx context.Context, viewer, userID string) schema.Presence {
	return a.c.Presence.Of(ctx, viewer, userID)
}

func (a coreAdapter) SyncPoint(ctx context.Context, user, cursor string) (uint64, uint64, error) {
	return a.c.Sync.Point(ctx, user, cursor)
}

func (a coreAdapter) Cursors(user string) func(seq uint64) string { return a.c.Sync.CursorsFor(user) }

func (a coreAdapter) Scan(ctx context.Context, user string, after, upTo uint64, redact bool, fn func(uint64, []byte) error) (uint64, error) {
	return a.c.Sync.Scan(ctx, user, after, upTo, 0, redact, fn)
}

func (a coreAdapter) Subscribe(user string, ch chan *nats.Msg) (liveSub, error) {
	sub, err := a.c.Sync.Subscribe(user, ch)
	if err != nil {
		return nil, err
	}
	return sub, nil
}

func (a coreAdapter) Generation() uint64 { return a.c.Sync.Generation() }

func (a coreAdapter) Allow(kind, userID string) error { return a.c.Limits.Allow(kind, userID) }

// frameLimit is the limit a frame is counted against in the gateway: the
// kinds chat does not see (send, receipt, typing and delete are counted
// there, whatever the transport). Malformed frames count as pings.
func frameLimit(typ string, decodeErr error) string {
	switch {
	case decodeErr != nil, typ == schema.TypePing:
		return chat.LimitPing
	case typ == schema.TypePresenceSubscribe, typ == schema.TypePresenceUnsubscrib:
		return chat.LimitPresence
	}
	return ""
}

func (a coreAdapter) NewPresenceSub(viewer string, deliver func([]byte) bool) presenceSub {
	return a.c.Presence.NewSub(viewer, deliver)
}

// wsConn is what a session uses of a *websocket.Conn.
type wsConn interface {
	NextReader() (int, io.Reader, error)
	WriteMessage(messageType int, data []byte) error
	WriteControl(messageType int, data []byte, deadline time.Time) error
	SetReadDeadline(t time.Time) error
	SetWriteDeadline(t time.Time) error
	SetPongHandler(h func(appData string) error)
	SetReadLimit(limit int64)
	Close() error
}

type sessionConfig struct {
	Heartbeat time.Duration
	// Silence is how long a connection may stay silent, on top of one
	// heartbeat, before it is dropped (default 30 s).
	Silence        time.Duration
	ReadLimit      int64
	SendQueue      int
	stacks         *stackPool
	logUnavailable func(what string, err error)
	// framesOut counts written frames (metrics); nil counts nothing.
	framesOut *atomic.Uint64
	// batch, when set, lets the writer put several frames in one socket
	// write (nil: one write per frame).
	batch frameBatcher
	// cut closes when a drain's time is up (drain.go); nil: never.
	cut <-chan struct{}
}

// frameBatcher collects the frames written between Hold and Flush into
// one socket write (batchConn).
type frameBatcher interface {
	Hold()
	Flush() error
}

// maxBatchFrames bounds how many ready frames the writer takes before it
// flushes, so one busy connection's answers are not held back by a
// steady stream of events.
const maxBatchFrames = 64

// eventBuffer is how many live events a connection holds while its
// writer is busy; past it NATS drops them and the writer re-reads the
// gap from the stream.
const eventBuffer = 64

// session is one WebSocket connection of one device. The reader goroutine
// reads frames; the writer goroutine owns the socket's write side: it
// replays, sends synced, then writes live events and answers. close may
// be called from anywhere and more than once.
type session struct {
	core   sessionCore
	conn   wsConn
	claims chat.Claims
	// cursor formats this user's cursors (sessionCore.Cursors, once).
	cursor func(seq uint64) string
	cfg    sessionConfig
	ctx    context.Context
	cancel context.CancelFunc

	out    *frameQueue    // answers (ack, error, pong); full means the client is too slow
	events chan *nats.Msg // republished inbox events and ephemeral events

	closeOnce sync.Once
	closeCode int
	closeText string
	quit      chan struct{}
	done      chan struct{} // closed when the session is over
	readDone  chan struct{} // closed when the reader returned

	// frames gates the frames being handled; a drain closes it
	// (goingAway, once).
	frames   frameGate
	awayOnce sync.Once

	// presence is created by the first presence.subscribe; frames are
	// handled one at a time, and run closes it after the reader ended.
	presence presenceSub

	// heard is when the client last sent a frame (unix ns; pongs do not
	// count): no ping is sent while the client keeps talking. pinged is
	// when the pinger last asked for a ping, pingNow how it asks the
	// writer (pinger.go).
	heard   atomic.Int64
	pinged  atomic.Int64
	pingNow chan struct{}

	// wmu is held by whoever writes to the socket: the writer goroutine
	// from before its replay to its end, except while it waits for work,
	// or the reader answering a ping while the writer waits (pong).
	// wdone: the writer has finished, nothing more may be written.
	wmu   sync.Mutex
	wdone bool

	// Owned by the writer: what it has seen of the live subscription.
	inboxSub   liveSub
	dropped    int
	generation uint64
}

func newSession(core sessionCore, conn wsConn, claims chat.Claims, cfg sessionConfig) *session {
	if cfg.stacks == nil {
		cfg.stacks = newStackPool()
	}
	if cfg.logUnavailable == nil {
		cfg.logUnavailable = func(string, error) {}
	}
	if cfg.Silence == 0 {
		cfg.Silence = 30 * time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &session{
		core: core, conn: conn, claims: claims, cursor: core.Cursors(claims.UserID), cfg: cfg, ctx: ctx, cancel: cancel,
		out:      newFrameQueue(cfg.SendQueue),
		events:   make(chan *nats.Msg, eventBuffer),
		quit:     make(chan struct{}),
		done:     make(chan struct{}),
		readDone: make(chan struct{}),
		pingNow:  make(chan struct{}, 1),
	}
}

// UserID, DeviceID and Close make a session a chat.Session.
func (s *session) UserID() string   { return s.claims.UserID }
func (s *session) DeviceID() string { return s.claims.DeviceID }

func (s *session) Close(reason chat.CloseReason) {
	switch reason {
	case chat.CloseRevoked:
		s.close(closeUnauthorized, "device revoked")
	default:
		s.goingAway()
	}
}

func (s *session) close(code int, text string) {
	s.closeOnce.Do(func() {
		s.closeCode, s.closeText = code, text
		close(s.quit)
		s.cancel()
	})
}

// enqueue queues an answer. When the queue is full the reader waits,
// which stops reading the client's frames: a client that reads gets every
// answer, and one that does not is cut off by the writer's timeout (4029).
func (s *session) enqueue(frame []byte) {
	s.out.push(frame, true, s.quit)
}

// pingFrame (exactly these bytes) is answered by pongFrame without being
// decoded; a ping with a ref or other spacing takes the usual path.
var pingFrame, pongFrame = []byte(`{"type":"ping"}`), []byte(`{"type":"pong"}`)

// offer queues an ephemeral event if there is room now: the registry's
// watcher, which calls it, never waits for one client.
func (s *session) offer(ev []byte) bool {
	return s.out.push(ev, false, nil)
}

func (s *session) enqueueJSON(v any) {
	b, _ := json.Marshal(v)
	s.enqueue(b)
}

func (s *session) run(cursor string) {
	defer s.cancel()
	// Subscribe before the sync point, so no event falls between the
	// replay and the first live event; overlaps are skipped by cursor.
	// One subscription carries stored and ephemeral events alike: each
	// costs about 0.7 KB in nats.go and nats-server per connection.
	sub, err := s.core.Subscribe(s.claims.UserID, s.events)
	if err != nil {
		s.close(closeGoingAway, "unavailable")
	} else {
		defer func() { _ = sub.Unsubscribe() }()
		s.inboxSub = sub
	}
	expiry := time.AfterFunc(time.Until(s.claims.Expires), func() {
		s.close(closeTokenExpired, "access token expired: refresh, then reconnect")
	})
	defer expiry.Stop()

	writerDone := make(chan struct{})
	s.wmu.Lock() // the writer's until its replay and synced are written
	go func() {
		defer close(writerDone)
		s.writeLoop(s.ctx, cursor)
	}()
	s.readLoop(s.ctx)
	<-writerDone
	if s.presence != nil {
		s.presence.Close()
	}
}

func (s *session) readLoop(ctx context.Context) {
	defer close(s.readDone)
	deadline := func() { _ = s.conn.SetReadDeadline(time.Now().Add(s.cfg.Silence + s.cfg.Heartbeat)) }
	deadline()
	// The handshake is the client's first word: a client that pings every
	// heartbeat from its connect on needs no ping of ours in between.
	s.heard.Store(time.Now().UnixNano())
	s.conn.SetPongHandler(func(string) error { deadline(); return nil })
	// A hard cap far above the read limit: frames between the two are
	// drained and refused with 413 while the connection lives on.
	s.conn.SetReadLimit(s.cfg.ReadLimit * 16)
	for {
		_, r, err := s.conn.NextReader()
		if err != nil {
			s.close(closeNormal, "")
			return
		}
		select {
		case <-s.quit:
			// Closing: the writer sends the close frame. Reading on (and
			// dropping what comes) until the client's own close, or the
			// writer's conn.Close, keeps the client's pipelined frames
			// from sitting unread when the socket closes: a close with
			// unread data is a TCP reset, which can destroy the close
			// frame before the client reads it (1006 instead of 1001).
			continue
		default:
		}
		deadline()
		s.heard.Store(time.Now().UnixNano())
		raw, err := io.ReadAll(io.LimitReader(r, s.cfg.ReadLimit+1))
		if err != nil {
			s.close(closeNormal, "")
			return
		}
		if int64(len(raw)) > s.cfg.ReadLimit {
			if _, err := io.Copy(io.Discard, r); err != nil {
				s.close(closePolicy, "frame too large")
				return
			}
			s.enqueue(errorFrame(chat.Errorf(schema.CodeTooLarge, "frame is over the %d-byte read limit", s.cfg.ReadLimit), ""))
			continue
		}
		if bytes.Equal(raw, pingFrame) {
			// The idle client's heartbeat, most frames of an idle
			// server: answered here, without a worker or JSON.
			s.pong()
		} else if !s.frames.begin() {
			s.refuse(raw) // draining: not handled, the client sends it again
		} else {
			s.cfg.stacks.run(func() { defer s.frames.end(); s.handleFrame(ctx, raw) })
		}
	}
}

// pong answers the exact ping frame on the reader's goroutine when the
// writer is waiting and nothing is queued before it: handing it to the
// writer costs a second goroutine wakeup per ping, which doubles the CPU
// of an idle connection's heartbeat (docs/benchmarks.md section 20,
// measured on a bare gorilla/websocket server). Otherwise it is
// queued like any answer, so it never overtakes one or goes before synced.
func (s *session) pong() {
	if s.out.len() > 0 || !s.wmu.TryLock() {
		s.enqueue(pongFrame)
		return
	}
	var err error
	if !s.wdone {
		err = s.write(pongFrame)
	}
	s.wmu.Unlock()
	if err != nil {
		s.close(closeTooSlow, "write failed: reconnect with your cursor")
	}
}

func (s *session) handleFrame(ctx context.Context, raw []byte) {
	f, err := schema.DecodeFrame(raw)
	if kind := frameLimit(f.Type, err); kind != "" {
		if lerr := s.core.Allow(kind, s.claims.UserID); lerr != nil {
			s.enqueue(errorFrame(lerr, f.Ref))
			return
		}
	}
	if err != nil {
		s.enqueue(errorFrame(err, f.Ref))
		return
	}
	switch f.Type {
	case schema.TypeSend:
		ack, err := s.core.Send(ctx, s.claims, &f.SendRequest)
		if err != nil {
			s.cfg.logUnavailable("websocket send", err)
			s.enqueue(errorFrame(err, f.Ref))
			return
		}
		ack.Type, ack.Ref = schema.TypeAck, f.Ref
		s.enqueueJSON(ack)
	case schema.TypeReceipt:
		if err := s.core.SetStatus(ctx, s.claims, f.MessageID, f.Status); err != nil {
			s.enqueue(errorFrame(err, f.Ref))
		}
	case schema.TypeTyping:
		if err := s.core.Typing(ctx, s.claims.UserID, f.ConversationID, f.State); err != nil {
			s.enqueue(errorFrame(err, f.Ref))
		}
	case schema.TypePresenceSubscribe:
		if s.presence == nil {
			s.presence = s.core.NewPresenceSub(s.claims.UserID, s.offer)
		}
		// Snapshots are answers (queued in order, waiting for room);
		// later changes are offered to the same queue, so none overtakes
		// its snapshot.
		if err := s.presence.Subscribe(ctx, f.UserIDs, func(p schema.Presence) { s.enqueueJSON(p) }); err != nil {
			s.enqueue(errorFrame(err, f.Ref))
		}
	case schema.TypePresenceUnsubscrib:
		if s.presence != nil {
			s.presence.Unsubscribe(f.UserIDs)
		}
	case schema.TypePing:
		s.enqueueJSON(schema.Pong{Type: schema.TypePong, Ref: f.Ref})
	}
}

// writeLoop owns the write side of the socket until the session closes.
// It starts with s.wmu held (run takes it) and holds it except while it
// waits for work.
func (s *session) writeLoop(ctx context.Context, cursor string) {
	defer s.conn.Close()
	defer func() { s.wdone = true; s.wmu.Unlock() }()
	var c uint64
	var err error
	s.hold()
	s.cfg.stacks.run(func() { c, err = s.replay(ctx, cursor) })
	if ferr := s.release(); err == nil {
		err = ferr
	}
	if err != nil {
		if ctx.Err() == nil {
			_ = s.write(errorFrame(err, ""))
			e, a, _ := refusal(err)
			s.close(a.close, e.Code)
		}
		s.writeClose()
		s.awaitClientClose()
		return
	}
	for {
		var err error
		s.wmu.Unlock()
		select {
		case <-s.out.ready:
			s.wmu.Lock()
			err = s.writeQueued(false)
		case m := <-s.events:
			s.wmu.Lock()
			s.holdIfMore()
			c, err = s.live(ctx, m, c)
		case <-s.pingNow:
			s.wmu.Lock()
			err = s.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(writeTimeout))
		case <-s.quit:
			s.wmu.Lock()
			s.flush()
			s.writeClose()
			s.awaitClientClose()
			return
		}
		// Take what else is ready, then write it all at once.
		for n := 1; err == nil && s.cfg.batch != nil && n < maxBatchFrames; n++ {
			select {
			case <-s.out.ready:
				err = s.writeQueued(true)
				continue
			case m := <-s.events:
				s.hold()
				c, err = s.live(ctx, m, c)
				continue
			default:
			}
			break
		}
		if ferr := s.release(); err == nil {
			err = ferr
		}
		if err != nil {
			s.close(closeTooSlow, "write failed: reconnect with your cursor")
			s.writeClose()
			return
		}
	}
}

// pingDue says whether the server should ping now: at most once a
// heartbeat, and not while the client talks. A client that sent a frame
// lately is alive and has its read deadline pushed back: a ping would only
// cost both sides a wakeup and a round trip. "Lately" is one heartbeat
// plus a tenth, because a client pinging every heartbeat_ms, as synced
// tells it to, is a few milliseconds late as often as early: without the
// slack about a third of such clients got a ping too (docs/benchmarks.md
// section 20). The slack is taken only
// where the silence allowed leaves the same margin for the pong as the
// slack itself; a client that only answers pongs gets a ping every
// heartbeat.
func (s *session) pingDue(now time.Time) bool {
	quiet := s.cfg.Heartbeat
	if slack := quiet / 10; s.cfg.Silence-slack >= quiet+slack {
		quiet += slack
	}
	t := now.UnixNano()
	return t-s.heard.Load() >= int64(quiet) && t-s.pinged.Load() >= int64(s.cfg.Heartbeat)
}

// hold starts collecting frames for one socket write.
func (s *session) hold() {
	if s.cfg.batch != nil {
		s.cfg.batch.Hold()
	}
}

// holdIfMore holds when more frames are already waiting: a lone frame
// goes straight to the socket, without the copy into a batch (measured:
// holding a single frame costs about 10 % more CPU than writing it).
func (s *session) holdIfMore() {
	if s.out.len()+len(s.events) > 0 {
		s.hold()
	}
}

// writeQueued writes every queued answer, held for one socket write when
// there are several, or when held is set (the writer is collecting).
func (s *session) writeQueued(held bool) error {
	fs := s.out.take()
	if held || len(fs) > 1 || len(s.events) > 0 {
		s.hold()
	}
	for _, f := range fs {
		if err := s.write(f); err != nil {
			return err
		}
	}
	return nil
}

// release writes the frames collected since hold, under the deadline
// the last of them set on the socket.
func (s *session) release() error {
	if s.cfg.batch == nil {
		return nil
	}
	return s.cfg.batch.Flush()
}

// writeTimeout bounds one write; a client that does not read for that
// long is disconnected.
const writeTimeout = 10 * time.Second

func (s *session) write(frame []byte) error {
	_ = s.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	if s.cfg.framesOut != nil {
		s.cfg.framesOut.Add(1)
	}
	return s.conn.WriteMessage(websocket.TextMessage, frame)
}

// flush writes the answers still queued (an error frame before a close).
func (s *session) flush() {
	for _, f := range s.out.take() {
		if s.write(f) != nil {
			return
		}
	}
}

func (s *session) writeClose() {
	_ = s.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(s.closeCode, s.closeText), time.Now().Add(time.Second))
}

// replay implements connect: wait for the sync point, send every event
// after the cursor (none without one), then synced. It returns the
// position the live stream continues from.
func (s *session) replay(ctx context.Context, cursor string) (uint64, error) {
	pos, from, err := s.core.SyncPoint(ctx, s.claims.UserID, cursor)
	if err != nil {
		return 0, err
	}
	synced := pos
	if cursor != "" && from < pos {
		last, err := s.sendRange(ctx, from, pos, true)
		if err != nil {
			return 0, err
		}
		if last > from {
			synced = last // the last event sent
		}
	}
	b, _ := json.Marshal(schema.Synced{Type: schema.TypeSynced, Cursor: s.cursor(synced), HeartbeatMS: s.cfg.Heartbeat.Milliseconds()})
	if err := s.write(b); err != nil {
		return 0, err
	}
	return pos, nil
}

// sendRange writes the user's events in (after, upTo] from the stream
// (upTo 0: to the newest) and returns the last cursor sent.
func (s *session) sendRange(ctx context.Context, after, upTo uint64, redact bool) (uint64, error) {
	return s.core.Scan(ctx, s.claims.UserID, after, upTo, redact, func(_ uint64, ev []byte) error {
		return s.write(ev)
	})
}

// live writes one republished event (or an ephemeral one) given that
// everything up to cursor c was sent, and returns the new c. A missed
// event (a dropped copy, a reconnect to NATS) is read from the stream, so
// the device still gets every event once, in order.
func (s *session) live(ctx context.Context, m *nats.Msg, c uint64) (uint64, error) {
	n, prev, stored, err := streams.Delivered(m)
	if !stored {
		return c, s.write(m.Data) // typing: ephemeral, no cursor
	}
	if err != nil || n <= c {
		return c, nil // replayed already
	}
	dropped := s.dropped
	if s.inboxSub != nil {
		dropped, _ = s.inboxSub.Dropped()
	}
	if gen := s.core.Generation(); prev > c || dropped > s.dropped || gen != s.generation {
		s.dropped, s.generation = dropped, gen
		var last uint64
		var err error
		s.cfg.stacks.run(func() { last, err = s.sendRange(ctx, c, 0, false) })
		return last, err
	}
	return n, s.write(chat.WithCursor(m.Data, s.cursor(n)))
}
