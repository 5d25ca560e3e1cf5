package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go"

	"github.com/natter-chat/natter/chat/auth"
	"github.com/natter-chat/natter/schema"
	"github.com/natter-chat/natter/streams"
)

// WebSocket close codes of the contract.
const (
	closeNormal        = websocket.CloseNormalClosure
	closeGoingAway     = websocket.CloseGoingAway
	closePolicy        = websocket.ClosePolicyViolation
	closeUnauthorized  = 4001
	closeTokenExpired  = 4002
	closeCursorExpired = 4010
	closeTooSlow       = 4029
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
		writeError(w, schema.Errorf(status, code, "websocket upgrade: %v", reason))
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
		writeError(w, schema.Errorf(http.StatusForbidden, schema.CodeForbidden, "origin %q is not allowed", r.Header.Get("Origin")))
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
	ctx, cancel := context.WithCancel(context.Background())
	s := &session{
		g: g, conn: conn, claims: claims, cancel: cancel,
		out:    make(chan []byte, g.cfg.SendQueue),
		events: make(chan *nats.Msg, eventBuffer),
		quit:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	if !g.addSession(s) {
		s.close(closeGoingAway, "server shutting down: reconnect")
		s.writeClose()
		_ = conn.Close()
		close(s.done)
		return
	}
	// The session runs on its own goroutine so this handler returns:
	// net/http's per-connection buffers (6 KiB) are then freed instead of
	// living as long as the socket.
	cursor := r.URL.Query().Get("cursor")
	go func() {
		defer close(s.done)
		defer g.removeSession(s)
		s.run(ctx, cursor)
	}()
}

// eventBuffer is how many live events a connection holds while its
// writer is busy; past it NATS drops them and the writer re-reads the
// gap from the stream.
const eventBuffer = 64

// session is one WebSocket connection of one device. The handler
// goroutine reads frames; the writer goroutine owns the socket's write
// side: it replays, sends synced, then writes live events and answers.
// close may be called from anywhere and more than once.
type session struct {
	g      *Gateway
	conn   *websocket.Conn
	claims auth.Claims
	cancel context.CancelFunc

	out    chan []byte    // answers (ack, error, pong); full means the client is too slow
	events chan *nats.Msg // republished inbox events and ephemeral events

	closeOnce sync.Once
	closeCode int
	closeText string
	quit      chan struct{}
	done      chan struct{} // closed when the session is over

	// Owned by the writer: what it has seen of the live subscription.
	inboxSub   *nats.Subscription
	dropped    int
	generation uint64
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

func (s *session) run(ctx context.Context, cursor string) {
	defer s.cancel()
	// Subscribe before the sync point, so no event falls between the
	// replay and the first live event; overlaps are skipped by cursor.
	// One subscription carries stored and ephemeral events alike: each
	// costs about 0.7 KB in nats.go and nats-server per connection.
	sub, err := s.g.nc.ChanSubscribe(streams.DeliverFilter(s.claims.UserID), s.events)
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
		s.writeLoop(ctx, cursor)
	}()
	s.readLoop(ctx)
	<-writerDone
}

func (s *session) readLoop(ctx context.Context) {
	deadline := func() { _ = s.conn.SetReadDeadline(time.Now().Add(silenceGrace + s.g.cfg.Heartbeat)) }
	deadline()
	s.conn.SetPongHandler(func(string) error { deadline(); return nil })
	// A hard cap far above the read limit: frames between the two are
	// drained and refused with 413 while the connection lives on.
	s.conn.SetReadLimit(s.g.cfg.ReadLimit * 16)
	for {
		_, r, err := s.conn.NextReader()
		if err != nil {
			s.close(closeNormal, "")
			return
		}
		deadline()
		raw, err := io.ReadAll(io.LimitReader(r, s.g.cfg.ReadLimit+1))
		if err != nil {
			s.close(closeNormal, "")
			return
		}
		if int64(len(raw)) > s.g.cfg.ReadLimit {
			if _, err := io.Copy(io.Discard, r); err != nil {
				s.close(closePolicy, "frame too large")
				return
			}
			s.enqueueJSON(schema.NewErrorFrame(schema.Errorf(http.StatusRequestEntityTooLarge, schema.CodeTooLarge,
				"frame is over the %d-byte read limit", s.g.cfg.ReadLimit), ""))
			continue
		}
		s.g.stacks.run(func() { s.handleFrame(ctx, raw) })
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
		s.enqueueJSON(schema.NewErrorFrame(err, f.Ref))
		return
	}
	switch f.Type {
	case schema.TypeSend:
		ack, err := s.g.send(ctx, s.claims, &f.SendRequest)
		if err != nil {
			s.g.logUnavailable("websocket send", err)
			s.enqueueJSON(schema.NewErrorFrame(err, f.Ref))
			return
		}
		ack.Type, ack.Ref = schema.TypeAck, f.Ref
		s.enqueueJSON(ack)
	case schema.TypeReceipt:
		if _, err := s.g.setStatus(ctx, s.claims, f.MessageID, f.Status); err != nil {
			s.enqueueJSON(schema.NewErrorFrame(err, f.Ref))
		}
	case schema.TypeTyping:
		if err := s.g.typing(ctx, s.claims.UserID, f.ConversationID, f.State); err != nil {
			s.enqueueJSON(schema.NewErrorFrame(err, f.Ref))
		}
	case schema.TypePresenceSubscribe:
		if len(f.UserIDs) > schema.MaxPresenceSubscribe {
			s.enqueueJSON(schema.NewErrorFrame(schema.BadRequest("at most %d user_ids", schema.MaxPresenceSubscribe), f.Ref))
			return
		}
		for _, id := range f.UserIDs {
			s.enqueueJSON(s.g.presence(ctx, s.claims.UserID, id))
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
	s.g.stacks.run(func() { c, err = s.replay(ctx, cursor) })
	if err != nil {
		if ctx.Err() == nil {
			_ = s.write(mustJSON(schema.NewErrorFrame(err, "")))
			code := closePolicy
			switch {
			case errors.Is(err, errCursorExpired):
				code = closeCursorExpired
			case errors.Is(err, schema.ErrUnavailable):
				code = closeGoingAway
			}
			s.close(code, schema.AsError(err).Code)
		}
		s.writeClose()
		return
	}
	ping := time.NewTicker(s.g.cfg.Heartbeat)
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

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

// replay implements connect: wait for the sync point, send every event
// after the cursor (none without one), then synced. It returns the
// position the live stream continues from.
func (s *session) replay(ctx context.Context, cursor string) (uint64, error) {
	pos, from, err := s.g.syncPoint(ctx, cursor)
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
	if err := s.write(mustJSON(schema.Synced{Type: schema.TypeSynced, Cursor: formatCursor(synced), HeartbeatMS: s.g.cfg.Heartbeat.Milliseconds()})); err != nil {
		return 0, err
	}
	return pos, nil
}

// sendRange writes the user's events in (after, upTo] from the stream
// (upTo 0: to the newest) and returns the last cursor sent.
func (s *session) sendRange(ctx context.Context, after, upTo uint64, redact bool) (uint64, error) {
	return s.g.scanInbox(ctx, s.claims.UserID, after, upTo, 0, func(seq uint64, data []byte) error {
		if redact {
			data = s.g.redact(ctx, s.claims.UserID, data)
		}
		return s.write(withCursor(data, seq))
	})
}

// live writes one republished event (or an ephemeral one) given that
// everything up to cursor c was sent, and returns the new c. A missed
// event (a dropped copy, a reconnect to NATS) is read from the stream, so
// the device still gets every event once, in order.
func (s *session) live(ctx context.Context, m *nats.Msg, c uint64) (uint64, error) {
	seqHdr := m.Header.Get(nats.JSSequence)
	if seqHdr == "" {
		return c, s.write(m.Data) // typing: ephemeral, no cursor
	}
	n, err := strconv.ParseUint(seqHdr, 10, 64)
	if err != nil || n <= c {
		return c, nil // replayed already
	}
	prev, _ := strconv.ParseUint(m.Header.Get(nats.JSLastSequence), 10, 64)
	if dropped, _ := s.inboxSub.Dropped(); prev > c || dropped > s.dropped || s.g.natsGeneration() != s.generation {
		s.dropped, s.generation = dropped, s.g.natsGeneration()
		var last uint64
		var err error
		s.g.stacks.run(func() { last, err = s.sendRange(ctx, c, 0, false) })
		return last, err
	}
	return n, s.write(withCursor(m.Data, n))
}

// Ephemeral events travel on core NATS (streams.LiveSubject), never stored.

func (g *Gateway) typing(ctx context.Context, userID, conv, state string) error {
	if state != "composing" && state != "paused" {
		return schema.BadRequest(`state must be "composing" or "paused"`)
	}
	if !schema.ValidConversationID(conv) {
		return schema.Errorf(http.StatusNotFound, schema.CodeNotFound, "conversation not found")
	}
	users, err := g.st.Participants(ctx, conv)
	if err != nil || !slices.Contains(users, userID) {
		return schema.Errorf(http.StatusNotFound, schema.CodeNotFound, "conversation not found")
	}
	ev, _ := json.Marshal(schema.Typing{Type: schema.TypeTyping, ConversationID: conv, UserID: userID, State: state})
	for _, u := range users {
		if u != userID {
			_ = g.nc.Publish(streams.LiveSubject(u), ev)
		}
	}
	return nil
}

// presence answers from this node's sessions; the cluster-wide registry
// (NATS KV) comes with the presence work. last_seen is known for users
// who disconnected since this process started, and shown per their
// privacy setting.
func (g *Gateway) presence(ctx context.Context, viewer, userID string) schema.Presence {
	g.mu.Lock()
	online, seen := g.online[userID] > 0, g.lastSeen[userID]
	g.mu.Unlock()
	p := schema.Presence{Type: schema.TypePresence, UserID: userID, Status: "offline"}
	if online {
		p.Status = "online"
		return p
	}
	if seen > 0 && g.lastSeenVisible(ctx, viewer, userID) {
		p.LastSeen = seen
	}
	return p
}

func (g *Gateway) lastSeenVisible(ctx context.Context, viewer, userID string) bool {
	if viewer == userID {
		return true
	}
	u, err := g.st.UserByID(ctx, userID)
	if err != nil {
		return false
	}
	switch u.LastSeenPrivacy {
	case "nobody":
		return false
	case "contacts":
		ok, err := g.st.SharesConversation(ctx, viewer, userID)
		return err == nil && ok
	}
	return true
}
