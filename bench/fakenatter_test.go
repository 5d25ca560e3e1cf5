package bench

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// fakeNatter is a small in-memory server that keeps the parts of the
// client contract the bench relies on (register, login, /v1/ws with
// cursors and synced, send → ack and message events, ping → pong), so
// that the scenarios can be tested before natter itself exists, and with
// faults natter must never show. All state is under mu.
type fakeNatter struct {
	mu     sync.Mutex
	users  map[string]*fakeUser // by username
	tokens map[string]*fakeUser
	seqs   map[string]int64          // conversation → last seq
	acks   map[string]map[string]any // sender/client_message_id → ack
	conns  map[*fakeConn]struct{}
	closed bool
	wg     sync.WaitGroup // connection goroutines

	// Faults: the nth delivery to a recipient (counting from 1) is
	// dropped, or sent twice.
	dropNth, dupNth int
	deliveries      int
	// Faults: from the nth send on (counting from 1, over all
	// connections) sends are refused with rate_limited; or left
	// unanswered, the connection of the nth closed hangUpDelay later
	// (when the client has had time to fill its window).
	refuseFrom, hangUpFrom int
	hangUpDelay            time.Duration
	sends                  int

	// connBallast is memory each connection holds (touched, so resident):
	// a known per-connection cost for the idle scenario to measure.
	connBallast int
}

type fakeUser struct {
	id, name, password string
	events             [][]byte // event k has cursor k+1
	conns              map[*fakeConn]struct{}
}

type fakeConn struct {
	ws      *websocket.Conn
	out     chan []byte
	user    *fakeUser
	ballast []byte
}

func newFakeNatter() *fakeNatter {
	return &fakeNatter{
		users:  map[string]*fakeUser{},
		tokens: map[string]*fakeUser{},
		seqs:   map[string]int64{},
		acks:   map[string]map[string]any{},
		conns:  map[*fakeConn]struct{}{},
	}
}

func (s *fakeNatter) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("POST /v1/auth/register", s.register)
	mux.HandleFunc("POST /v1/auth/login", s.login)
	mux.HandleFunc("GET /v1/ws", s.serveWS)
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code string) {
	writeJSON(w, status, map[string]any{"error": map[string]string{"code": code, "message": code}})
}

func (s *fakeNatter) register(w http.ResponseWriter, r *http.Request) {
	var in struct{ Username, Password string }
	if json.NewDecoder(r.Body).Decode(&in) != nil || len(in.Username) < 3 || len(in.Username) > 32 || len(in.Password) < 8 {
		writeError(w, http.StatusBadRequest, "bad_request")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.users[in.Username] != nil {
		writeError(w, http.StatusConflict, "username_taken")
		return
	}
	u := &fakeUser{id: "u" + strconv.Itoa(len(s.users)+1), name: in.Username, password: in.Password, conns: map[*fakeConn]struct{}{}}
	s.users[in.Username] = u
	writeJSON(w, http.StatusCreated, map[string]string{"user_id": u.id, "username": u.name})
}

func (s *fakeNatter) login(w http.ResponseWriter, r *http.Request) {
	var in struct{ Username, Password string }
	_ = json.NewDecoder(r.Body).Decode(&in)
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.users[in.Username]
	if u == nil || u.password != in.Password {
		writeError(w, http.StatusUnauthorized, "unauthorized")
		return
	}
	token := fmt.Sprintf("t%d", len(s.tokens)+1)
	s.tokens[token] = u
	writeJSON(w, http.StatusOK, map[string]any{
		"user_id": u.id, "device_id": "d" + token, "access_token": token, "refresh_token": "r" + token, "expires_in": 3600,
	})
}

func (s *fakeNatter) serveWS(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	u := s.tokens[r.URL.Query().Get("access_token")]
	s.mu.Unlock()
	if u == nil {
		writeError(w, http.StatusUnauthorized, "unauthorized")
		return
	}
	after, _ := strconv.Atoi(r.URL.Query().Get("cursor"))
	up := websocket.Upgrader{}
	ws, err := up.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	c := &fakeConn{ws: ws, out: make(chan []byte, 1<<14), user: u, ballast: bytes.Repeat([]byte{1}, s.connBallast)}

	// Replay, synced and registration for live events happen under one
	// lock: nothing falls between them.
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ws.Close()
		return
	}
	for _, ev := range u.events[min(after, len(u.events)):] {
		c.out <- ev
	}
	c.out <- mustJSON(map[string]any{"type": "synced", "cursor": strconv.Itoa(len(u.events)), "heartbeat_ms": 25000})
	u.conns[c] = struct{}{}
	s.conns[c] = struct{}{}
	s.wg.Add(2)
	s.mu.Unlock()

	go func() { // writer; ends when out is closed
		defer s.wg.Done()
		for b := range c.out {
			if c.ws.WriteMessage(websocket.TextMessage, b) != nil {
				c.ws.Close()
			}
		}
	}()
	defer func() {
		s.mu.Lock()
		delete(u.conns, c)
		delete(s.conns, c)
		close(c.out)
		s.mu.Unlock()
		ws.Close()
		s.wg.Done()
	}()
	for {
		_, data, err := ws.ReadMessage()
		if err != nil {
			return
		}
		var f struct {
			Type            string `json:"type"`
			Ref             string `json:"ref"`
			ClientMessageID string `json:"client_message_id"`
			RecipientID     string `json:"recipient_id"`
			Content         string `json:"content"`
		}
		if json.Unmarshal(data, &f) != nil {
			continue
		}
		switch f.Type {
		case "ping":
			s.push(c, mustJSON(map[string]any{"type": "pong", "ref": f.Ref}))
		case "send":
			s.send(c, f.ClientMessageID, f.RecipientID, f.Content)
		}
	}
}

// send stores a message from c's user and fans it out; the caller's ack
// is pushed last.
func (s *fakeNatter) send(c *fakeConn, cmid, to, content string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sendFault(c, cmid) {
		return
	}
	from := c.user
	key := from.id + "/" + cmid
	if ack, ok := s.acks[key]; ok {
		ack["duplicate"] = true
		s.push(c, mustJSON(ack))
		return
	}
	var peer *fakeUser
	for _, u := range s.users {
		if u.id == to {
			peer = u
		}
	}
	if peer == nil {
		s.push(c, mustJSON(map[string]any{"type": "error", "status": 404, "code": "not_found", "ref": cmid}))
		return
	}
	conv := "c:" + min(from.id, to) + ":" + max(from.id, to)
	s.seqs[conv]++
	seq := s.seqs[conv]
	msgID := fmt.Sprintf("m%s-%d", conv, seq)
	for _, u := range []*fakeUser{from, peer} {
		ev := mustJSON(map[string]any{
			"type": "message", "cursor": strconv.Itoa(len(u.events) + 1), "message_id": msgID, "conversation_id": conv,
			"seq": seq, "sender_id": from.id, "recipient_id": to, "message_type": "user", "content": content,
			"client_message_id": cmid, "server_ts": 0,
		})
		u.events = append(u.events, ev)
		for uc := range u.conns {
			copies := 1
			if u == peer && u != from {
				s.deliveries++
				switch s.deliveries {
				case s.dropNth:
					copies = 0
				case s.dupNth:
					copies = 2
				}
			}
			for range copies {
				s.push(uc, ev)
			}
		}
	}
	ack := map[string]any{
		"type": "ack", "ref": cmid, "client_message_id": cmid, "message_id": msgID, "conversation_id": conv,
		"seq": seq, "server_ts": 0, "status": "sent", "duplicate": false,
	}
	s.acks[key] = ack
	s.push(c, mustJSON(ack))
}

// sendFault applies the refuseFrom and hangUpFrom faults to a send and
// reports whether it did. The caller holds mu.
func (s *fakeNatter) sendFault(c *fakeConn, cmid string) bool {
	s.sends++
	switch {
	case s.hangUpFrom > 0 && s.sends >= s.hangUpFrom:
		if s.sends == s.hangUpFrom {
			time.AfterFunc(s.hangUpDelay, func() { c.ws.Close() })
		}
		return true
	case s.refuseFrom > 0 && s.sends >= s.refuseFrom:
		s.push(c, mustJSON(map[string]any{"type": "error", "status": 429, "code": "rate_limited", "ref": cmid}))
		return true
	}
	return false
}

// push queues b on c, or drops a connection that stopped reading (as
// natter does, with 4029). The caller holds mu.
func (s *fakeNatter) push(c *fakeConn, b []byte) {
	select {
	case c.out <- b:
	default:
		c.ws.Close()
	}
}

// Close closes every connection and waits for their goroutines.
func (s *fakeNatter) Close() {
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.ws.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// fakeServeEnv makes the test binary act as `natter serve`, so that
// --spawn can be tested with it as --natter-bin; fakeBallastEnv sets its
// connBallast (bytes).
const (
	fakeServeEnv   = "NATTER_BENCH_FAKE_SERVE"
	fakeBallastEnv = "NATTER_BENCH_FAKE_BALLAST"
)

func TestMain(m *testing.M) {
	if os.Getenv(fakeServeEnv) == "1" && len(os.Args) > 1 && os.Args[1] == "serve" {
		os.Exit(fakeServe(os.Args[2:]))
	}
	os.Exit(m.Run())
}

// fakeServe serves a fakeNatter with natter serve's flags until SIGTERM.
func fakeServe(args []string) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	addr := fs.String("http", "", "")
	data := fs.String("data", "", "")
	rateLimit := fs.String("rate-limit", "on", "")
	fsync := fs.String("fsync", "interval", "")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *addr == "" || *data == "" || *rateLimit != "off" || (*fsync != "always" && *fsync != "interval") {
		fmt.Fprintf(os.Stderr, "fake serve: bad flags %q\n", args)
		return 2
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fake := newFakeNatter()
	fake.connBallast, _ = strconv.Atoi(os.Getenv(fakeBallastEnv))
	srv := &http.Server{Handler: fake.Handler()}
	go func() { _ = srv.Serve(ln) }()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	<-sig
	_ = srv.Close()
	fake.Close()
	return 0
}
