package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/natter-chat/natter/gateway/auth"
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
	s := &session{
		g: g, conn: conn, claims: claims,
		out:  make(chan []byte, g.cfg.SendQueue),
		live: make(chan *nats.Msg, 64),
		quit: make(chan struct{}),
		done: make(chan struct{}),
	}
	if !g.addSession(s) {
		s.closeCode, s.closeText = closeGoingAway, "server shutting down"
		close(s.quit)
		s.writeLoop()
		close(s.done)
		return
	}
	s.run(r.Context(), r.URL.Query())
}

// session is one WebSocket connection of one device. The handler
// goroutine reads, writeLoop writes; close may be called from anywhere
// and more than once.
type session struct {
	g      *Gateway
	conn   *websocket.Conn
	claims auth.Claims

	out  chan []byte    // frames to write; full means the client is too slow
	live chan *nats.Msg // ephemeral events (typing)

	closeOnce sync.Once
	closeCode int
	closeText string
	quit      chan struct{}
	done      chan struct{}
}

func (s *session) close(code int, text string) {
	s.closeOnce.Do(func() {
		s.closeCode, s.closeText = code, text
		close(s.quit)
	})
}

// enqueue queues a frame without blocking; a client that lets its queue
// fill is disconnected and resumes with its cursor.
func (s *session) enqueue(frame []byte) {
	select {
	case s.out <- frame:
	case <-s.quit:
	default:
		s.close(closeTooSlow, "too slow to read: reconnect with your cursor")
	}
}

func (s *session) enqueueJSON(v any) {
	b, _ := json.Marshal(v)
	s.enqueue(b)
}

func (s *session) run(ctx context.Context, q url.Values) {
	defer func() {
		s.g.removeSession(s)
		close(s.done)
	}()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		s.writeLoop()
	}()
	defer func() { <-writerDone }()

	expiry := time.AfterFunc(time.Until(s.claims.Expires), func() {
		s.close(closeTokenExpired, "access token expired: refresh, then reconnect")
	})
	defer expiry.Stop()

	sub, err := s.g.nc.ChanSubscribe(liveSubject(s.claims.UserID), s.live)
	if err == nil {
		defer func() { _ = sub.Unsubscribe() }()
	}
	stop, err := s.startEvents(ctx, q.Get("cursor"))
	if err != nil {
		s.enqueueJSON(schema.NewErrorFrame(err, ""))
		code := closePolicy
		switch {
		case errors.Is(err, errCursorExpired):
			code = closeCursorExpired
		case errors.Is(err, schema.ErrUnavailable):
			code = closeGoingAway
		}
		s.close(code, schema.AsError(err).Code)
		return
	}
	defer stop()
	s.readLoop(ctx)
}

// startEvents delivers the device's events: replay after the cursor, then
// synced, then live, all from one ordered consumer on the user's inbox.
func (s *session) startEvents(ctx context.Context, cursor string) (stop func(), err error) {
	pos, err := s.g.syncPoint(ctx)
	if err != nil {
		return nil, err
	}
	from := pos
	replay := false
	if cursor != "" {
		if from, err = s.g.checkCursor(ctx, cursor); err != nil {
			return nil, err
		}
		m, err := s.g.inbox.GetMsg(ctx, from+1, jetstream.WithGetMsgSubject(streams.InboxFilter(s.claims.UserID)))
		switch {
		case err == nil:
			replay = m.Sequence <= pos
		case !errors.Is(err, jetstream.ErrMsgNotFound):
			return nil, errors.Join(schema.ErrUnavailable, err)
		}
	}
	synced := func(c uint64) {
		s.enqueueJSON(schema.Synced{Type: schema.TypeSynced, Cursor: formatCursor(c), HeartbeatMS: s.g.cfg.Heartbeat.Milliseconds()})
	}
	if !replay {
		synced(pos)
		from = max(from, pos)
	}
	cons, err := s.g.js.OrderedConsumer(ctx, streams.StreamInbox, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{streams.InboxFilter(s.claims.UserID)},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    from + 1,
	})
	if err != nil {
		return nil, errors.Join(schema.ErrUnavailable, err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		md, err := m.Metadata()
		if err != nil {
			return
		}
		data := m.Data()
		if replay {
			data = s.g.redact(ctx, data)
		}
		s.enqueue(withCursor(data, md.Sequence.Stream))
		if replay && (md.NumPending == 0 || md.Sequence.Stream >= pos) {
			replay = false
			synced(md.Sequence.Stream)
		}
	})
	if err != nil {
		return nil, errors.Join(schema.ErrUnavailable, err)
	}
	return cc.Stop, nil
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
		s.handleFrame(ctx, raw)
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
			s.enqueueJSON(schema.NewErrorFrame(err, f.Ref))
			return
		}
		ack.Type, ack.Ref = schema.TypeAck, f.Ref
		s.enqueueJSON(ack)
	case schema.TypeReceipt:
		if _, _, err := s.g.setStatus(ctx, s.claims, f.MessageID, f.Status); err != nil {
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

func (s *session) writeLoop() {
	ping := time.NewTicker(s.g.cfg.Heartbeat)
	defer ping.Stop()
	defer s.conn.Close()
	write := func(kind int, b []byte) bool {
		_ = s.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if err := s.conn.WriteMessage(kind, b); err != nil {
			s.close(closeNormal, "")
			return false
		}
		return true
	}
	for {
		select {
		case f := <-s.out:
			if !write(websocket.TextMessage, f) {
				return
			}
		case m := <-s.live:
			if !write(websocket.TextMessage, m.Data) {
				return
			}
		case <-ping.C:
			_ = s.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(10*time.Second))
		case <-s.quit:
			// Flush what is queued (an error frame before a close), then close.
			for {
				select {
				case f := <-s.out:
					if !write(websocket.TextMessage, f) {
						return
					}
					continue
				default:
				}
				break
			}
			_ = s.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(s.closeCode, s.closeText), time.Now().Add(time.Second))
			return
		}
	}
}

// Ephemeral events travel on core NATS, never stored.

func liveSubject(userID string) string { return "natter.live." + userID }

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
			_ = g.nc.Publish(liveSubject(u), ev)
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
