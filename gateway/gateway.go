// Package gateway is natter's edge: REST, WebSocket and long-poll clients
// authenticate here, sends are validated, sequenced and published to
// JetStream, and each device's events are streamed from its user's inbox.
package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/time/rate"

	"github.com/natter-chat/natter/chat/auth"
	"github.com/natter-chat/natter/gateway/openapi"
	"github.com/natter-chat/natter/schema"
	"github.com/natter-chat/natter/store"
	"github.com/natter-chat/natter/streams"
)

// Store is what the gateway reads and writes directly; messages reach the
// store through JetStream and the persistence consumer.
type Store interface {
	store.Accounts
	store.Devices
	store.Blocks
	store.Conversations
	store.Receipts
	MessageByClientID(ctx context.Context, senderID, clientMessageID string) (store.Message, error)
	Message(ctx context.Context, conversationID string, seq int64) (store.Message, error)
	History(ctx context.Context, conversationID, viewerID string, beforeSeq int64, limit int) ([]store.HistoryEntry, error)
	LastSeq(ctx context.Context, conversationID string) (int64, error)
}

// Config tunes the gateway. Zero values are not defaults: cmd/natter fills
// every field from config.Server.
type Config struct {
	ReadLimit      int64
	Heartbeat      time.Duration
	SendQueue      int
	AllowedOrigins []string
	RateLimit      bool
	SendBurst      int
	SendRate       float64
	AuthBurst      int
	AuthRate       float64
	Pprof          bool
	// SoleSequencer says this gateway sequences every message there is
	// (the single-node serve): it may then skip the store's dedupe read
	// for ids it has surely never seen. Never set it with other gateways.
	SoleSequencer bool
	Logger        *slog.Logger
}

// Gateway serves clients. Create it with New, serve Handler, and call
// Close when done.
type Gateway struct {
	cfg    Config
	log    *slog.Logger
	st     Store
	nc     *nats.Conn
	js     jetstream.JetStream
	conv   jetstream.Stream
	inbox  jetstream.Stream
	wm     *streams.Watermark
	signer *auth.Signer
	seq    *sequencer
	seen   *seenIDs
	stacks *stackPool
	revoke *revocations

	sendLimit *limiter
	authLimit *limiter
	// unavailableLog spaces out the logs of 5xx answers.
	unavailableLog rate.Sometimes

	users  *cache[struct{}]
	blocks *cache[bool]

	// ensured remembers direct conversations known to exist, so the hot
	// path does not write to the store on every send.
	ensured sync.Map

	mu       sync.Mutex
	sessions map[*session]struct{}
	online   map[string]int   // user id -> open sessions on this node
	lastSeen map[string]int64 // user id -> when their last session closed
	closed   bool

	// natsGen counts reconnections to NATS: core messages may have been
	// lost in between, so live sessions re-read from the stream.
	natsGen atomic.Uint64

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func (g *Gateway) natsGeneration() uint64 { return g.natsGen.Load() }

// New returns a gateway over a JetStream connection whose streams exist.
func New(ctx context.Context, cfg Config, st Store, nc *nats.Conn, signer *auth.Signer) (*Gateway, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	conv, err := js.Stream(ctx, streams.StreamConv)
	if err != nil {
		return nil, err
	}
	inbox, err := js.Stream(ctx, streams.StreamInbox)
	if err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	g := &Gateway{
		cfg: cfg, log: cfg.Logger, st: st, nc: nc, js: js, conv: conv, inbox: inbox,
		wm:             streams.NewWatermark(js, 2*time.Millisecond),
		signer:         signer,
		sendLimit:      newLimiter(cfg.RateLimit, cfg.SendRate, cfg.SendBurst),
		authLimit:      newLimiter(cfg.RateLimit, cfg.AuthRate, cfg.AuthBurst),
		sessions:       map[*session]struct{}{},
		unavailableLog: rate.Sometimes{Interval: time.Second},
		users:          newCache[struct{}](1 << 20),
		blocks:         newCache[bool](1 << 20),
		online:         map[string]int{},
		lastSeen:       map[string]int64{},
	}
	g.ctx, g.cancel = context.WithCancel(context.Background())
	nc.SetReconnectHandler(func(*nats.Conn) { g.natsGen.Add(1) })
	g.seq = newSequencer(js, conv, st)
	g.seen = newSeenIDs()
	g.stacks = newStackPool()
	if l, ok := st.(clientIDLister); ok && cfg.SoleSequencer {
		g.start(func(ctx context.Context) { g.loadSeenIDs(ctx, l) })
	}
	if g.revoke, err = newRevocations(ctx, js); err != nil {
		return nil, err
	}
	blockSub, err := g.watchBlockChanges()
	if err != nil {
		return nil, err
	}
	g.start(func(ctx context.Context) {
		<-ctx.Done()
		_ = blockSub.Unsubscribe()
	})
	g.start(func(ctx context.Context) { g.revoke.watch(ctx, g.closeDevice) })
	g.start(g.sendLimit.sweep)
	g.start(g.authLimit.sweep)
	g.start(g.seq.sweep)
	return g, nil
}

func (g *Gateway) start(f func(ctx context.Context)) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		f(g.ctx)
	}()
}

// Handler routes every endpoint of the contract.
func (g *Gateway) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, 200, map[string]string{"status": "ok"}) })
	mux.HandleFunc("GET /v1/openapi.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(openapi.Spec)
	})
	mux.HandleFunc("POST /v1/auth/register", g.handleRegister)
	mux.HandleFunc("POST /v1/auth/login", g.handleLogin)
	mux.HandleFunc("POST /v1/auth/refresh", g.handleRefresh)

	mux.Handle("GET /v1/me/devices", g.authed(g.handleDevices))
	mux.Handle("DELETE /v1/me/devices/{device_id}", g.authed(g.handleRevokeDevice))
	mux.Handle("PUT /v1/me/privacy", g.authed(g.handlePrivacy))
	mux.Handle("PUT /v1/me/blocks/{user_id}", g.authed(g.handleBlock))
	mux.Handle("DELETE /v1/me/blocks/{user_id}", g.authed(g.handleUnblock))
	mux.Handle("GET /v1/users/{user_id}", g.authed(g.handleUser))
	// One pattern for /by-username/{name} and /{id}/presence: as two
	// patterns they would both match /v1/users/by-username/presence.
	mux.Handle("GET /v1/users/{first}/{second}", g.authed(g.handleUserSub))

	mux.Handle("POST /v1/conversations", g.authed(g.handleCreateConversation))
	mux.Handle("GET /v1/conversations", g.authed(g.handleConversations))
	mux.Handle("GET /v1/conversations/{conversation_id}", g.authed(g.handleConversation))
	mux.Handle("GET /v1/conversations/{conversation_id}/messages", g.authed(g.handleHistory))

	mux.Handle("POST /v1/messages", g.authed(g.handleSend))
	mux.Handle("POST /v1/messages/{message_id}/status", g.authed(g.handleStatus))
	mux.Handle("DELETE /v1/messages/{message_id}", g.authed(g.handleDelete))

	mux.Handle("GET /v1/events", g.authed(g.handleEvents))
	mux.HandleFunc("GET /v1/ws", g.handleWS)

	if g.cfg.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		// The catch-all shadows ServeMux's own 405: tell a wrong method
		// from an unknown path here, in the contract's error format.
		var allowed []string
		for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete} {
			probe := r.Clone(r.Context())
			probe.Method = m
			if _, pattern := mux.Handler(probe); pattern != "/" {
				allowed = append(allowed, m)
			}
		}
		if len(allowed) > 0 {
			w.Header().Set("Allow", strings.Join(allowed, ", "))
			writeError(w, schema.Errorf(http.StatusMethodNotAllowed, schema.CodeMethodNotAllowed, "%s is not allowed on %s (allowed: %s)", r.Method, r.URL.Path, strings.Join(allowed, ", ")))
			return
		}
		writeError(w, schema.Errorf(http.StatusNotFound, schema.CodeNotFound, "no such endpoint: %s %s", r.Method, r.URL.Path))
	})
	return mux
}

// Close closes every WebSocket with 1001 (going away: reconnect) and stops
// the gateway's goroutines. net/http's Shutdown does not close hijacked
// connections, so this must be called too. Safe to call twice.
func (g *Gateway) Close() {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return
	}
	g.closed = true
	sessions := make([]*session, 0, len(g.sessions))
	for s := range g.sessions {
		sessions = append(sessions, s)
	}
	g.mu.Unlock()
	for _, s := range sessions {
		s.close(closeGoingAway, "server shutting down: reconnect")
	}
	for _, s := range sessions {
		<-s.done
	}
	g.cancel()
	g.wg.Wait()
}

// closeDevice cuts off every connection of a revoked device.
func (g *Gateway) closeDevice(deviceID string) {
	g.mu.Lock()
	var victims []*session
	for s := range g.sessions {
		if s.claims.DeviceID == deviceID {
			victims = append(victims, s)
		}
	}
	g.mu.Unlock()
	for _, s := range victims {
		s.close(closeUnauthorized, "device revoked")
	}
}

func (g *Gateway) addSession(s *session) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.sessions[s] = struct{}{}
	g.online[s.claims.UserID]++
	return true
}

func (g *Gateway) removeSession(s *session) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := g.sessions[s]; !ok {
		return
	}
	delete(g.sessions, s)
	if g.online[s.claims.UserID]--; g.online[s.claims.UserID] <= 0 {
		delete(g.online, s.claims.UserID)
		g.lastSeen[s.claims.UserID] = time.Now().UnixMilli()
	}
}

// writeJSON writes v with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError is the one place where errors become HTTP answers.
func writeError(w http.ResponseWriter, err error) {
	e := schema.AsError(err)
	if e.Status == http.StatusTooManyRequests || e.RetryAfterMS > 0 {
		w.Header().Set("Retry-After", retryAfterSeconds(e.RetryAfterMS))
	}
	writeJSON(w, e.Status, map[string]any{"error": e})
}

// fromStore maps the store's sentinel errors to contract errors.
func fromStore(err error, what string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrNotFound):
		return schema.Errorf(http.StatusNotFound, schema.CodeNotFound, "%s not found", what)
	default:
		return err
	}
}
