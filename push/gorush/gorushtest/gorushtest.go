// Package gorushtest is a local stand-in for a gorush server: it speaks
// gorush v1.22's POST /api/push (the same checks of the body gorush makes
// before queueing, the same {"success":"ok","counts":N} answer) and
// records every notification it accepted. It can refuse (a status of the
// test's choice) or be down (its port closed) and come back on the same
// address.
package gorushtest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// Notification is what the server recorded of one notification: every
// field natter sets, decoded by name from the request.
type Notification struct {
	ID         string            `json:"notif_id"`
	Tokens     []string          `json:"tokens"`
	Platform   int               `json:"platform"`
	Title      string            `json:"title"`
	Message    string            `json:"message"`
	Badge      *int              `json:"badge"`
	ThreadID   string            `json:"thread-id"`
	CollapseID string            `json:"collapse_id"`
	Priority   string            `json:"priority"`
	Sound      any               `json:"sound"`
	Data       map[string]string `json:"data"`
}

// Server is a fake gorush. Its methods are safe for concurrent use.
type Server struct {
	addr string

	mu       sync.Mutex
	ln       net.Listener
	srv      *http.Server
	refuse   int // status to answer with; 0 accepts
	got      []Notification
	requests int
	bad      []string // requests gorush itself would refuse, and why
}

// Start listens on a free local port.
func Start() (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &Server{addr: ln.Addr().String()}
	s.serve(ln)
	return s, nil
}

// URL is the base URL for --push-gorush-url.
func (s *Server) URL() string { return "http://" + s.addr }

func (s *Server) serve(ln net.Listener) {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/push", s.handle)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	s.ln, s.srv = ln, srv
	go func() { _ = srv.Serve(ln) }()
}

func (s *Server) handle(w http.ResponseWriter, r *http.Request) {
	raw, err := io.ReadAll(r.Body)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests++
	if s.refuse != 0 {
		http.Error(w, `{"message":"refused by the test"}`, s.refuse)
		return
	}
	var req struct {
		Notifications []json.RawMessage `json:"notifications"`
	}
	if err != nil || json.Unmarshal(raw, &req) != nil || req.Notifications == nil {
		s.bad = append(s.bad, "Missing notifications field.")
		http.Error(w, `{"message":"Missing notifications field."}`, http.StatusBadRequest)
		return
	}
	if len(req.Notifications) == 0 || len(req.Notifications) > 100 {
		s.bad = append(s.bad, fmt.Sprintf("%d notifications", len(req.Notifications)))
		http.Error(w, `{"message":"Notifications field is empty or over the limit."}`, http.StatusBadRequest)
		return
	}
	var ns []Notification
	for _, rn := range req.Notifications {
		var n Notification
		if err := json.Unmarshal(rn, &n); err != nil {
			s.bad = append(s.bad, "notification does not decode: "+err.Error())
			http.Error(w, `{"message":"bad notification"}`, http.StatusBadRequest)
			return
		}
		// gorush's binding:"required" on tokens and platform, and
		// CheckMessage's rules.
		if len(n.Tokens) == 0 || n.Tokens[0] == "" || (n.Platform != 1 && n.Platform != 2) {
			s.bad = append(s.bad, fmt.Sprintf("notification %s: tokens %q, platform %d", n.ID, n.Tokens, n.Platform))
			http.Error(w, `{"message":"bad notification"}`, http.StatusBadRequest)
			return
		}
		ns = append(ns, n)
	}
	s.got = append(s.got, ns...)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"success": "ok", "counts": len(ns), "logs": []any{}})
}

// Refuse makes every request get status (0 accepts again).
func (s *Server) Refuse(status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refuse = status
}

// Down closes the port: requests are refused at the TCP level.
func (s *Server) Down() {
	s.mu.Lock()
	srv := s.srv
	s.srv = nil
	s.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
}

// Up listens again on the same address.
func (s *Server) Up() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		return nil
	}
	var ln net.Listener
	var err error
	for i := 0; i < 100; i++ { // the port may linger briefly after Close
		if ln, err = net.Listen("tcp", s.addr); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("gorushtest: listen again on %s: %w", s.addr, err)
	}
	s.serve(ln)
	return nil
}

// Close stops the server.
func (s *Server) Close() { s.Down() }

// Notifications returns what was accepted so far, in order.
func (s *Server) Notifications() []Notification {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Notification(nil), s.got...)
}

// Requests counts the requests received, accepted or not.
func (s *Server) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

// Bad returns why requests were refused as malformed; natter must make none.
func (s *Server) Bad() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.bad) == 0 {
		return nil
	}
	return errors.New(fmt.Sprint(s.bad))
}
