package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"github.com/oklog/ulid/v2"

	"github.com/natter-chat/natter/chat"
	"github.com/natter-chat/natter/schema"
)

// The NATS-native transport. A bot or service logs in to natter's NATS
// with its access token (as the NATS token, or as the password with any
// user name); nats-server asks natter through its auth callout, and
// natter answers with a user whose permissions are exactly:
//
//	publish   natter.api.<user_id>.<device_id>.>   requests and session frames
//	subscribe _INBOX.<device_id>.>                 replies and session events
//
// so a NATS-native client reaches no other user's subjects, no
// JetStream or KV API, no stream subject, and gets replies only under its
// own prefix (nats.go: nats.CustomInboxPrefix("_INBOX."+deviceID)). The
// user expires with the access token: nats-server disconnects it then.
//
// Requests (request-reply, subject natter.api.<user_id>.<device_id>.<op>)
// run the same chat core as REST and WebSocket; see docs/protocol.md.

// Subjects of the NATS-native API.
const (
	natsAPIPrefix  = "natter.api."
	authSubject    = "$SYS.REQ.USER.AUTH"
	natsQueue      = "natter"
	natsInboxStart = "_INBOX."
)

// NATSInboxPrefix is the inbox prefix a NATS-native client of device
// uses: the only subjects it may subscribe to are under it.
func NATSInboxPrefix(deviceID string) string { return natsInboxStart + deviceID }

// NATSSubject is the request subject of op for a user's device.
func NATSSubject(userID, deviceID, op string) string {
	return natsAPIPrefix + userID + "." + deviceID + "." + op
}

// NATSConfig sets up the NATS-native transport.
type NATSConfig struct {
	// Issuer signs the users the auth callout admits; its public key is
	// the callout issuer nats-server was configured with.
	Issuer nkeys.KeyPair
	// Account is where admitted users are placed ("$G", the global
	// account, on natter's embedded server).
	Account string
}

// ServeNATS answers the auth callout and the NATS-native API on nc until
// ctx ends. nc is natter's own connection (an auth callout user).
func (g *Gateway) ServeNATS(ctx context.Context, nc *nats.Conn, cfg NATSConfig) error {
	if cfg.Account == "" {
		cfg.Account = "$G"
	}
	n := &natsTransport{g: g, nc: nc, cfg: cfg, sessions: map[string]*natsConn{}, expires: map[string]time.Time{}}
	subs := []*nats.Subscription{}
	defer func() {
		for _, s := range subs {
			_ = s.Unsubscribe()
		}
		n.closeAll()
	}()
	for subject, h := range map[string]nats.MsgHandler{
		authSubject:               n.authorize,
		natsAPIPrefix + "*.*.*":   n.request,
		natsAPIPrefix + "*.*.s.*": n.frame,
	} {
		// Requests are shared among nodes; a session's frames go to the
		// node that holds it, which subscribes to them alone.
		var s *nats.Subscription
		var err error
		if subject == natsAPIPrefix+"*.*.s.*" {
			s, err = nc.Subscribe(subject, h)
		} else {
			s, err = nc.QueueSubscribe(subject, natsQueue, h)
		}
		if err != nil {
			return fmt.Errorf("nats api: subscribe %s: %w", subject, err)
		}
		subs = append(subs, s)
	}
	if err := nc.Flush(); err != nil {
		return fmt.Errorf("nats api: %w", err)
	}
	<-ctx.Done()
	return nil
}

type natsTransport struct {
	g   *Gateway
	nc  *nats.Conn
	cfg NATSConfig

	mu       sync.Mutex
	sessions map[string]*natsConn // frames subject -> its session's connection
	// expires holds when each device's NATS login ends (its access
	// token's expiry): its sessions end then too.
	expires map[string]time.Time
}

func (n *natsTransport) loggedIn(c chat.Claims) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if c.Expires.After(n.expires[c.DeviceID]) {
		n.expires[c.DeviceID] = c.Expires
	}
	// Forget logins long over, so the map stays as large as the set of
	// devices logged in lately.
	if len(n.expires) > 1024 {
		now := time.Now()
		for d, t := range n.expires {
			if t.Before(now) {
				delete(n.expires, d)
			}
		}
	}
}

// expiry is when the device's NATS login ends; for a login this node did
// not see (another node's callout), one token lifetime from now at most.
func (n *natsTransport) expiry(deviceID string) time.Time {
	n.mu.Lock()
	defer n.mu.Unlock()
	if t, ok := n.expires[deviceID]; ok {
		return t
	}
	return time.Now().Add(n.g.core.Accounts.TokenTTL())
}

// authorize answers one auth callout request: the token (NATS token, or
// password) must be a valid access token of a device not revoked.
func (n *natsTransport) authorize(m *nats.Msg) {
	req, err := jwt.DecodeAuthorizationRequestClaims(string(m.Data))
	if err != nil {
		n.g.log.Warn("nats auth callout: undecodable request", "err", err)
		return // nats-server times the login out
	}
	token := req.ConnectOptions.Token
	if token == "" {
		token = req.ConnectOptions.Password
	}
	res := jwt.NewAuthorizationResponseClaims(req.UserNkey)
	res.Audience = req.Server.ID
	claims, err := n.g.authenticate(token)
	if err == nil && (!subjectSafe(claims.UserID) || !subjectSafe(claims.DeviceID)) {
		err = errors.New("ids are not subject tokens")
	}
	if err != nil {
		res.Error = "natter: " + err.Error()
	} else {
		uc := jwt.NewUserClaims(req.UserNkey)
		uc.Name = claims.UserID
		uc.Audience = n.cfg.Account
		uc.Expires = claims.Expires.Unix()
		uc.Pub.Allow.Add(natsAPIPrefix + claims.UserID + "." + claims.DeviceID + ".>")
		uc.Sub.Allow.Add(NATSInboxPrefix(claims.DeviceID) + ".>")
		if res.Jwt, err = uc.Encode(n.cfg.Issuer); err != nil {
			n.g.log.Error("nats auth callout: sign user", "err", err)
			res.Jwt, res.Error = "", "natter: internal error"
		} else {
			n.loggedIn(claims)
		}
	}
	out, err := res.Encode(n.cfg.Issuer)
	if err != nil {
		n.g.log.Error("nats auth callout: sign response", "err", err)
		return
	}
	_ = m.Respond([]byte(out))
}

// subjectSafe: natter's ids are ULIDs, but a subject token must never
// carry a wildcard or a separator, whatever issued it.
func subjectSafe(id string) bool {
	return id != "" && !strings.ContainsAny(id, ".*> \t\r\n")
}

// caller reads the user and device from a request subject
// natter.api.<user>.<device>.<op>...: nats-server's permissions let a
// client publish under its own ids only. The device's revocation is
// checked on every request (its NATS login outlives a revocation).
func (n *natsTransport) caller(subject string) (chat.Claims, []string, error) {
	parts := strings.Split(strings.TrimPrefix(subject, natsAPIPrefix), ".")
	if len(parts) < 3 {
		return chat.Claims{}, nil, chat.Errorf(schema.CodeNotFound, "no such subject: %s", subject)
	}
	c := chat.Claims{UserID: parts[0], DeviceID: parts[1]}
	if !n.g.started() {
		return c, nil, errStarting
	}
	if n.g.core.Accounts.DeviceRevoked(c.DeviceID) {
		return c, nil, chat.Errorf(schema.CodeUnauthorized, "this device was revoked: log in again")
	}
	return c, parts[2:], nil
}

// replyAllowed: answers go only under the caller's own inbox prefix, so
// a request cannot make natter publish to another client's inbox.
func replyAllowed(c chat.Claims, reply string) bool {
	return strings.HasPrefix(reply, NATSInboxPrefix(c.DeviceID)+".")
}

func (n *natsTransport) respond(m *nats.Msg, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		b = errorFrame(err, "")
	}
	_ = m.Respond(b)
}

// request answers natter.api.<user>.<device>.<op>.
func (n *natsTransport) request(m *nats.Msg) {
	c, op, err := n.caller(m.Subject)
	if m.Reply == "" || !replyAllowed(c, m.Reply) {
		return // nowhere to answer, or somewhere that is not the caller's
	}
	if err != nil {
		_ = m.Respond(errorFrame(err, ""))
		return
	}
	n.g.stacks.run(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		v, ref, err := n.handle(ctx, c, op[0], m.Data)
		if err != nil {
			n.g.logUnavailable("nats "+op[0], err)
			_ = m.Respond(errorFrame(err, ref))
			return
		}
		n.respond(m, v)
	})
}

// natsOK answers requests that have nothing else to say.
type natsOK struct {
	OK  bool   `json:"ok"`
	Ref string `json:"ref,omitempty"`
}

// syncRequest is the body of sync: events after cursor, at most limit.
type syncRequest struct {
	Cursor string `json:"cursor"`
	Limit  int    `json:"limit"`
}

// syncPage answers sync. Synced is true when the page reaches the
// barrier: every message acknowledged before the request is in it or
// before its cursor (the WebSocket `synced`).
type syncPage struct {
	Events []json.RawMessage `json:"events"`
	Cursor string            `json:"cursor"`
	Synced bool              `json:"synced"`
}

// connectRequest opens a session: events (replay, synced, live) are
// published to Inbox, which must be under the caller's inbox prefix.
type connectRequest struct {
	Cursor string `json:"cursor"`
	Inbox  string `json:"inbox"`
}

type connectAnswer struct {
	Session     string `json:"session"`
	Frames      string `json:"frames"`
	HeartbeatMS int64  `json:"heartbeat_ms"`
}

// handle runs one request. The body is the WebSocket frame of the same
// name (its "type" may be left out) or, for sync and connect, their own.
func (n *natsTransport) handle(ctx context.Context, c chat.Claims, op string, data []byte) (any, string, error) {
	// Sends, statuses and typing are limited in chat whatever the
	// transport; the rest as a WebSocket's pings and presence frames are.
	switch op {
	case "sync", "connect", "me", "ping":
		if err := n.g.core.Limits.Allow(chat.LimitPing, c.UserID); err != nil {
			return nil, "", err
		}
	case "presence":
		if err := n.g.core.Limits.Allow(chat.LimitPresence, c.UserID); err != nil {
			return nil, "", err
		}
	case "send", "receipt", "typing":
	default:
		if err := n.g.core.Limits.Allow(chat.LimitPing, c.UserID); err != nil {
			return nil, "", err
		}
	}
	switch op {
	case "sync":
		var r syncRequest
		if err := decodeBody(data, &r); err != nil {
			return nil, "", err
		}
		return n.sync(ctx, c, r)
	case "connect":
		var r connectRequest
		if err := decodeBody(data, &r); err != nil {
			return nil, "", err
		}
		return n.connect(c, r)
	case "me":
		me, err := n.g.core.Accounts.Me(ctx, c)
		return me, "", err
	}
	frameType := map[string]string{"send": schema.TypeSend, "receipt": schema.TypeReceipt, "typing": schema.TypeTyping,
		"presence": schema.TypePresenceSubscribe, "ping": schema.TypePing}[op]
	if frameType == "" {
		return nil, "", chat.Errorf(schema.CodeNotFound, "unknown request %q: send, receipt, typing, presence, sync, connect, me or ping", op)
	}
	f, err := schema.DecodeFrame(withType(data, frameType))
	if err != nil {
		return nil, f.Ref, err
	}
	if f.Type != frameType {
		return nil, f.Ref, chat.Errorf(schema.CodeBadRequest, "a %s request carries type %q", op, f.Type)
	}
	switch f.Type {
	case schema.TypeSend:
		ack, err := n.g.core.Messages.Send(ctx, c, &f.SendRequest)
		ack.Type, ack.Ref = schema.TypeAck, f.Ref
		return ack, f.Ref, err
	case schema.TypeReceipt:
		_, err := n.g.core.Messages.SetStatus(ctx, c, f.MessageID, f.Status)
		return natsOK{OK: true, Ref: f.Ref}, f.Ref, err
	case schema.TypeTyping:
		err := n.g.core.Presence.Typing(ctx, c.UserID, f.ConversationID, f.State)
		return natsOK{OK: true, Ref: f.Ref}, f.Ref, err
	case schema.TypePresenceSubscribe:
		if len(f.UserIDs) > schema.MaxPresenceSubscribe {
			return nil, f.Ref, chat.Errorf(schema.CodeBadRequest, "at most %d user_ids", schema.MaxPresenceSubscribe)
		}
		out := make([]schema.Presence, 0, len(f.UserIDs))
		for _, id := range f.UserIDs {
			out = append(out, n.g.core.Presence.Of(ctx, c.UserID, id))
		}
		return map[string]any{"presence": out, "ref": f.Ref}, f.Ref, nil
	default: // ping
		return schema.Pong{Type: schema.TypePong, Ref: f.Ref}, f.Ref, nil
	}
}

// withType adds "type" to a JSON object that has none.
func withType(data []byte, t string) []byte {
	var probe struct {
		Type *string `json:"type"`
	}
	if json.Unmarshal(data, &probe) != nil || probe.Type != nil {
		return data // malformed (DecodeFrame says why) or typed
	}
	trimmed := strings.TrimSpace(string(data))
	if !strings.HasPrefix(trimmed, "{") {
		return data
	}
	rest := strings.TrimSpace(trimmed[1:])
	if rest == "}" {
		return []byte(`{"type":"` + t + `"}`)
	}
	return []byte(`{"type":"` + t + `",` + rest)
}

// decodeBody decodes a request body as REST bodies are (schema.DecodeJSON:
// the contract's 400, no Go type names); an empty body means {}.
func decodeBody(data []byte, v any) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	return schema.DecodeJSON(data, v)
}

// sync pages the caller's events after a cursor, like a long-poll that
// does not wait: with no cursor it answers the current cursor at once.
func (n *natsTransport) sync(ctx context.Context, c chat.Claims, r syncRequest) (any, string, error) {
	limit := r.Limit
	if limit <= 0 || limit > chat.MaxPollEvents {
		limit = chat.MaxPollEvents
	}
	pos, from, err := n.g.core.Sync.Point(ctx, c.UserID, r.Cursor)
	if err != nil {
		return nil, "", err
	}
	page := syncPage{Events: []json.RawMessage{}, Cursor: n.g.core.Sync.FormatCursor(c.UserID, pos), Synced: true}
	if r.Cursor == "" || from >= pos {
		return page, "", nil
	}
	var last uint64
	_, err = n.g.core.Sync.Scan(ctx, c.UserID, from, pos, limit, true, func(seq uint64, ev []byte) error {
		page.Events = append(page.Events, ev)
		last = seq
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	if len(page.Events) >= limit {
		page.Synced = false
	}
	if last > 0 {
		page.Cursor = n.g.core.Sync.FormatCursor(c.UserID, last)
	}
	return page, "", nil
}

// connect opens a session: the WebSocket session's machinery (replay,
// synced, live events with gap repair, frames and answers, heartbeats,
// presence, revocation) over two NATS subjects.
func (n *natsTransport) connect(c chat.Claims, r connectRequest) (any, string, error) {
	if !replyAllowed(c, r.Inbox) || strings.ContainsAny(r.Inbox, "*> ") {
		return nil, "", chat.Errorf(schema.CodeBadRequest, "inbox must be a subject under %s.", NATSInboxPrefix(c.DeviceID))
	}
	// NATS-native sessions count with the user's WebSockets.
	release, err := n.g.wsCap.acquire(c.UserID)
	if err != nil {
		return nil, "", err
	}
	claims := c
	claims.Expires = n.expiry(c.DeviceID)
	id := strings.ToLower(ulid.Make().String())
	frames := NATSSubject(c.UserID, c.DeviceID, "s."+id)
	conn := newNATSConn(n.nc, r.Inbox)
	n.mu.Lock()
	n.sessions[frames] = conn
	n.mu.Unlock()
	forget := func() {
		n.mu.Lock()
		delete(n.sessions, frames)
		n.mu.Unlock()
		release()
	}
	if !n.g.startSession(conn, nil, claims, r.Cursor, &n.g.counters.natsSessions, forget) {
		forget()
		return nil, "", chat.Unavailable(errors.New("shutting down"), time.Second, "the server is shutting down", chat.RetryConnect)
	}
	return connectAnswer{Session: id, Frames: frames, HeartbeatMS: n.g.cfg.Heartbeat.Milliseconds()}, "", nil
}

// frame hands a session frame to its session.
func (n *natsTransport) frame(m *nats.Msg) {
	n.mu.Lock()
	conn := n.sessions[m.Subject]
	n.mu.Unlock()
	if conn == nil {
		if c, _, err := n.caller(m.Subject); err == nil && m.Reply != "" && replyAllowed(c, m.Reply) {
			_ = m.Respond(errorFrame(chat.Errorf(schema.CodeNotFound, "no such session: connect again with your cursor"), ""))
		}
		return
	}
	conn.deliver(m.Data)
}

func (n *natsTransport) closeAll() {
	n.mu.Lock()
	conns := make([]*natsConn, 0, len(n.sessions))
	for _, c := range n.sessions {
		conns = append(conns, c)
	}
	n.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}
