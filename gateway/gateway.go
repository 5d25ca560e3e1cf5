// Package gateway holds natter's transports: REST, WebSocket and
// long-poll (later NATS-native). Each authenticates, decodes, calls chat
// and encodes; the rules live in chat. Errors become answers in one
// table (edge.go).
package gateway

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/natter-chat/natter/chat"
	"github.com/natter-chat/natter/gateway/openapi"
	"github.com/natter-chat/natter/schema"
)

// Config tunes the gateway. The zero value of each field means its
// documented default, filled in by withDefaults (and nowhere else).
type Config struct {
	// ReadLimit is the largest WebSocket frame or request body (default
	// 1 MiB).
	ReadLimit int64
	// Heartbeat is the interval of server pings (default 25 s).
	Heartbeat time.Duration
	// PresenceTimeout is how long a WebSocket may stay silent (no frame,
	// no pong), on top of one heartbeat, before it is dropped (default
	// 30 s).
	PresenceTimeout time.Duration
	// SendQueue is how many answers a connection queues (default 64).
	SendQueue int
	// AllowedOrigins are the browser origins, besides the server's own,
	// that may open WebSockets.
	AllowedOrigins []string
	// RateLimit turns the per-address login/register/refresh limit on: AuthBurst
	// at once (default 20), then AuthRate per second (default 1).
	RateLimit bool
	AuthBurst int
	AuthRate  float64
	// MaxWSPerUser and MaxPollsPerUser cap one user's open WebSockets
	// (default 20) and concurrent long-polls (default 5); a negative value
	// lifts the cap, and so does RateLimit off.
	MaxWSPerUser    int
	MaxPollsPerUser int
	// Pprof serves /debug/pprof; off unless asked for.
	Pprof bool
	// Metrics, when set, is served at GET /metrics.
	Metrics http.Handler
	// Admin moves /metrics and pprof from Handler to AdminHandler (a
	// separate, private address); /healthz and /readyz answer on both.
	Admin bool
	// ReadyChecks are what /readyz checks besides the gateway's own
	// (revocations loaded); cmd adds NATS, streams, store, consumers.
	ReadyChecks []ReadyCheck
	// RateLimited, when set, is told of every refusal by a gateway limit
	// (metrics).
	RateLimited func(limit string)
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.RateLimited == nil {
		c.RateLimited = func(string) {}
	}
	if c.ReadLimit == 0 {
		c.ReadLimit = 1 << 20
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = 25 * time.Second
	}
	if c.PresenceTimeout == 0 {
		c.PresenceTimeout = 30 * time.Second
	}
	if c.SendQueue == 0 {
		c.SendQueue = 64
	}
	if c.AuthBurst == 0 {
		c.AuthBurst = 20
	}
	if c.AuthRate == 0 {
		c.AuthRate = 1
	}
	if c.MaxWSPerUser == 0 {
		c.MaxWSPerUser = 20
	}
	if c.MaxPollsPerUser == 0 {
		c.MaxPollsPerUser = 5
	}
	if !c.RateLimit {
		c.MaxWSPerUser, c.MaxPollsPerUser = -1, -1
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// ReadyCheck is one condition of /readyz: nil when it holds.
type ReadyCheck struct {
	Name  string
	Check func(ctx context.Context) error
}

// Gateway serves clients over HTTP. Create it with New, run Run, serve
// Handler, and call Close when done.
type Gateway struct {
	cfg       Config
	log       *slog.Logger
	core      *chat.Core
	stacks    *stackPool
	pinger    *pinger
	authLimit *chat.Limiter
	// wsCap and pollCap cap each user's WebSockets and long-polls.
	wsCap, pollCap *userCap
	// unavailableLog spaces out the logs of 5xx answers.
	unavailableLog rate.Sometimes
	counters       counters

	wg    sync.WaitGroup
	drain drainer // drain.go
}

// New returns a gateway over chat's services.
func New(cfg Config, core *chat.Core) *Gateway {
	cfg = cfg.withDefaults()
	return &Gateway{
		cfg: cfg, log: cfg.Logger, core: core,
		stacks:         newStackPool(),
		pinger:         newPinger(cfg.Heartbeat),
		authLimit:      chat.NewLimiter(cfg.RateLimit, cfg.AuthRate, cfg.AuthBurst).OnRefuse(func() { cfg.RateLimited("auth") }),
		wsCap:          newUserCap("WebSockets", cfg.MaxWSPerUser),
		pollCap:        newUserCap("long-polls", cfg.MaxPollsPerUser),
		unavailableLog: rate.Sometimes{Interval: time.Second},
		drain:          newDrainer(),
	}
}

// Run runs the gateway's own goroutines (the connection worker pool, the
// WebSocket pinger, the address limiter's sweep) until ctx ends.
func (g *Gateway) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, run := range []func(context.Context) error{g.stacks.Run, g.pinger.Run, g.authLimit.Run} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = run(ctx)
		}()
	}
	wg.Wait()
	return nil
}

// Close closes every WebSocket with 1001 (going away: reconnect) at once
// and waits for them; Drain is the graceful way. net/http's Shutdown does
// not close hijacked connections, so this must be called too. Safe to
// call twice.
func (g *Gateway) Close() { g.Cut() }

// Handler routes every endpoint of the contract.
func (g *Gateway) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, 200, map[string]string{"status": "ok"}) })
	mux.HandleFunc("GET /readyz", g.handleReady)
	mux.HandleFunc("GET /v1/openapi.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(openapi.Spec)
	})
	mux.HandleFunc("POST /v1/auth/register", g.anonymous(true, g.handleRegister))
	mux.HandleFunc("POST /v1/auth/login", g.anonymous(true, g.handleLogin))
	mux.HandleFunc("POST /v1/auth/refresh", g.anonymous(true, g.handleRefresh))

	mux.Handle("GET /v1/me", g.authed(g.handleMe))
	mux.Handle("GET /v1/me/devices", g.authed(g.handleDevices))
	mux.Handle("DELETE /v1/me/devices/{device_id}", g.authed(g.handleRevokeDevice))
	mux.Handle("GET /v1/me/privacy", g.authed(g.handleGetPrivacy))
	mux.Handle("PUT /v1/me/privacy", g.authed(g.handlePrivacy))
	mux.Handle("GET /v1/me/blocks", g.authed(g.handleBlocks))
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
	mux.Handle("POST /v1/conversations/{conversation_id}/typing", g.authed(g.handleTyping))
	mux.Handle("POST /v1/presence/subscribe", g.authed(g.handlePresenceSubscribe))
	mux.Handle("POST /v1/presence/unsubscribe", g.authed(g.handlePresenceUnsubscribe))

	mux.Handle("POST /v1/messages", g.authed(g.handleSend))
	mux.Handle("POST /v1/messages/{message_id}/status", g.authed(g.handleStatus))
	mux.Handle("DELETE /v1/messages/{message_id}", g.authed(g.handleDelete))

	g.routeGroups(mux)

	mux.Handle("GET /v1/events", g.authed(g.handleEvents))
	g.pushRoutes(mux)
	mux.HandleFunc("GET /v1/ws", g.handleWS)

	if !g.cfg.Admin {
		g.handleOperators(mux)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		// The catch-all shadows ServeMux's own 405: tell a wrong method
		// from an unknown path here, in the contract's error format.
		var allowed []string
		for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
			probe := r.Clone(r.Context())
			probe.Method = m
			if _, pattern := mux.Handler(probe); pattern != "/" {
				allowed = append(allowed, m)
			}
		}
		if len(allowed) > 0 {
			w.Header().Set("Allow", strings.Join(allowed, ", "))
			writeError(w, chat.Errorf(schema.CodeMethodNotAllowed, "%s is not allowed on %s (allowed: %s)", r.Method, r.URL.Path, strings.Join(allowed, ", ")))
			return
		}
		writeError(w, chat.Errorf(schema.CodeNotFound, "no such endpoint: %s %s", r.Method, r.URL.Path))
	})
	return nosniff(g.cors(mux))
}

// AdminHandler serves what operators scrape and debug with, for a
// separate address (Config.Admin): /metrics, pprof, /healthz, /readyz.
func (g *Gateway) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, 200, map[string]string{"status": "ok"}) })
	mux.HandleFunc("GET /readyz", g.handleReady)
	g.handleOperators(mux)
	return nosniff(mux)
}

// handleOperators adds /metrics and, when asked for, pprof.
func (g *Gateway) handleOperators(mux *http.ServeMux) {
	if g.cfg.Metrics != nil {
		mux.Handle("GET /metrics", g.cfg.Metrics)
	}
	if g.cfg.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
}

// nosniff stops browsers from reading a JSON answer as HTML or script.
func nosniff(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		h.ServeHTTP(w, r)
	})
}

// errStarting answers authenticated requests until the revocations are
// loaded: before, a revoked token could pass.
var errStarting = chat.Unavailable(errors.New("revocations not loaded yet"), time.Second,
	"the server is starting", chat.RetryRequest)

func (g *Gateway) started() bool {
	select {
	case <-g.core.RevocationsLoaded():
		return true
	default:
		return false
	}
}

// handleReady answers 200 when every check holds, else 503 naming the
// ones that fail.
func (g *Gateway) handleReady(w http.ResponseWriter, r *http.Request) {
	if g.Draining() { // first, so load balancers take the node out at once
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "draining",
			"failing": map[string]string{"draining": "the server is shutting down"},
			"error":   schema.Error{Code: schema.CodeUnavailable, Message: "draining: the server is shutting down"}})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	failing := map[string]string{}
	if !g.started() {
		failing["revocations"] = "not loaded yet"
	}
	for _, c := range g.cfg.ReadyChecks {
		if err := c.Check(ctx); err != nil {
			failing[c.Name] = err.Error()
		}
	}
	if len(failing) == 0 {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
		return
	}
	names := make([]string, 0, len(failing))
	for n := range failing {
		names = append(names, n)
	}
	slices.Sort(names)
	w.Header().Set("Retry-After", "1")
	writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "not ready", "failing": failing,
		"error": schema.Error{Code: schema.CodeUnavailable, Message: "not ready: " + strings.Join(names, ", ")}})
}
