package gateway

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go"

	"github.com/natter-chat/natter/chat"
	"github.com/natter-chat/natter/schema"
	"github.com/natter-chat/natter/streams"
)

// silenceGrace is how long a connection may stay silent, on top of one
// heartbeat, before it is dropped.
const silenceGrace = 30 * time.Second

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
	conn, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // Upgrade answered the client
	}
	s := newSession(coreAdapter{g.core}, conn, claims, sessionConfig{
		Heartbeat: g.cfg.Heartbeat, ReadLimit: g.cfg.ReadLimit, SendQueue: g.cfg.SendQueue,
		stacks: g.stacks, logUnavailable: g.logUnavailable,
	})
	if !g.core.Sessions.Add(s) {
		s.close(closeGoingAway, "server shutting down: reconnect")
		s.writeClose()
		_ = conn.Close()
		close(s.done)
		return
	}
	// The session runs on its own goroutine so this handler returns:
	// net/http's per-connection buffers (6 KiB) are then freed instead of
	// living as long as the socket. The gateway owns it (Close waits).
	cursor := r.URL.Query().Get("cursor")
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		defer close(s.done)
		defer g.core.Sessions.Remove(s)
		s.run(cursor)
	}()
}

// sessionCore is what a WebSocket session needs of chat: narrow, so that a
// session can be tested without a server, and so that another transport
// sees what the WebSocket one relies on.
type sessionCore interface {
	Send(ctx context.Context, c chat.Claims, req *schema.SendRequest) (schema.Ack, error)
	SetStatus(ctx context.Context, c chat.Claims, messageID, status string) error
	Typing(ctx context.Context, userID, conv, state string) error
	Presence(ctx context.Context, viewer, userID string) schema.Presence
	// SyncPoint and Scan: see chat.Sync.Point and chat.Sync.Scan.
	SyncPoint(ctx context.Context, cursor string) (pos, from uint64, err error)
	Scan(ctx context.Context, user string, after, upTo uint64, redact bool, fn func(seq uint64, event []byte) error) (uint64, error)
	// Subscribe delivers user's live events to ch.
	Subscribe(user string, ch chan *nats.Msg) (liveSub, error)
	// Generation changes when live events may have been lost (a NATS
	// reconnection).
	Generation() uint64
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

func (a coreAdapter) SyncPoint(ctx context.Context, cursor string) (uint64, uint64, error) {
	return a.c.Sync.Point(ctx, cursor)
}

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
	Heartbeat      time.Duration
	ReadLimit      int64
	SendQueue      int
	stacks         *stackPool
	logUnavailable func(what string, err error)
}

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
	cfg    sessionConfig
	ctx    context.Context
	cancel context.CancelFunc

	out    chan []byte    // answers (ack, error, pong); full means the client is too slow
	events chan *nats.Msg // republished inbox events and ephemeral events

	closeOnce sync.Once
	closeCode int
	closeText string
	quit      chan struct{}
	done      chan struct{} // closed when the session is over

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
	ctx, cancel := context.WithCancel(context.Background())
	return &session{
		core: core, conn: conn, claims: claims, cfg: cfg, ctx: ctx, cancel: cancel,
		out:    make(chan []byte, cfg.SendQueue),
		events: make(chan *nats.Msg, eventBuffer),
		quit:   make(chan struct{}),
		done:   make(chan struct{}),
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
		s.close(closeGoingAway, "server shutting down: reconnect")
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
	select {
	case s.out <- frame:
	case <-s.quit:
	}
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
	go func() {
		defer close(writerDone)
		s.writeLoop(s.ctx, cursor)
	}()
	s.readLoop(s.ctx)
	<-writerDone
}

func (s *session) readLoop(ctx context.Context) {
	deadline := func() { _ = s.conn.SetReadDeadline(time.Now().Add(silenceGrace + s.cfg.Heartbeat)) }
	deadline()
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
		deadline()
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
		s.cfg.stacks.run(func() { s.handleFrame(ctx, raw) })
		select {
		case <-s.quit:
			return
		default:
		}
	}
}

func (s *session) handleFrame(ctx context.Context, raw []byte) {
	f, err := schema.DecodeFrame(raw)
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
		if len(f.UserIDs) > schema.MaxPresenceSubscribe {
			s.enqueue(errorFrame(chat.Errorf(schema.CodeBadRequest, "at most %d user_ids", schema.MaxPresenceSubscribe), f.Ref))
			return
		}
		for _, id := range f.UserIDs {
			s.enqueueJSON(s.core.Presence(ctx, s.claims.UserID, id))
		}
	case schema.TypePresenceUnsubscrib:
	case schema.TypePing:
		s.enqueueJSON(schema.Pong{Type: schema.TypePong, Ref: f.Ref})
	}
}

// writeLoop owns the write side of the socket until the session closes.
func (s *session) writeLoop(ctx context.Context, cursor string) {
	defer s.conn.Close()
	var c uint64
	var err error
	s.cfg.stacks.run(func() { c, err = s.replay(ctx, cursor) })
	if err != nil {
		if ctx.Err() == nil {
			_ = s.write(errorFrame(err, ""))
			e, a, _ := refusal(err)
			s.close(a.close, e.Code)
		}
		s.writeClose()
		return
	}
	ping := time.NewTicker(s.cfg.Heartbeat)
	defer ping.Stop()
	for {
		var err error
		select {
		case f := <-s.out:
			err = s.write(f)
		case m := <-s.events:
			c, err = s.live(ctx, m, c)
		case <-ping.C:
			err = s.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(writeTimeout))
		case <-s.quit:
			s.flush()
			s.writeClose()
			return
		}
		if err != nil {
			s.close(closeTooSlow, "write failed: reconnect with your cursor")
			s.writeClose()
			return
		}
	}
}

// writeTimeout bounds one write; a client that does not read for that
// long is disconnected.
const writeTimeout = 10 * time.Second

func (s *session) write(frame []byte) error {
	_ = s.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	return s.conn.WriteMessage(websocket.TextMessage, frame)
}

// flush writes the answers still queued (an error frame before a close).
func (s *session) flush() {
	for {
		select {
		case f := <-s.out:
			if s.write(f) != nil {
				return
			}
		default:
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
	pos, from, err := s.core.SyncPoint(ctx, cursor)
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
	b, _ := json.Marshal(schema.Synced{Type: schema.TypeSynced, Cursor: chat.FormatCursor(synced), HeartbeatMS: s.cfg.Heartbeat.Milliseconds()})
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
	return n, s.write(chat.WithCursor(m.Data, n))
}
