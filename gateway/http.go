package gateway

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/natter-chat/natter/chat"
	"github.com/natter-chat/natter/schema"
)

type ctxKey struct{}

// caller returns the authenticated device of a request.
func caller(r *http.Request) chat.Claims {
	c, _ := r.Context().Value(ctxKey{}).(chat.Claims)
	return c
}

// authenticate checks a bearer token, once revocations are known.
func (g *Gateway) authenticate(token string) (chat.Claims, error) {
	if !g.started() {
		return chat.Claims{}, errStarting
	}
	return g.core.Accounts.Authenticate(token)
}

func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// authed wraps a handler that needs a caller.
func (g *Gateway) authed(h func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A caller's data must never sit in a shared or browser cache.
		w.Header().Set("Cache-Control", "no-store")
		c, err := g.authenticate(bearer(r))
		if err != nil {
			writeError(w, err)
			return
		}
		r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, c))
		if err := h(w, r); err != nil {
			g.fail(w, r, err)
		}
	})
}

// anonymous wraps a handler that needs no caller; limited ones are
// rate-limited per client address.
func (g *Gateway) anonymous(limited bool, h func(http.ResponseWriter, *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		// Register, login and refresh answer with tokens: never cached.
		w.Header().Set("Cache-Control", "no-store")
		var err error
		if limited {
			err = g.authLimit.Allow(clientAddr(r))
		}
		if err == nil {
			err = h(w, r)
		}
		if err != nil {
			g.fail(w, r, err)
		}
	}
}

// fail answers with err, logging what is not a contract error.
func (g *Gateway) fail(w http.ResponseWriter, r *http.Request, err error) {
	if _, _, ok := refusal(err); !ok {
		g.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	} else {
		g.logUnavailable(r.Method+" "+r.URL.Path, err)
	}
	writeError(w, err)
}

// logUnavailable logs a 5xx answer's cause (a full disk, JetStream down),
// at most once a second: the client sees only the contract's message, the
// operator needs the cause, and an outage must not flood the log.
func (g *Gateway) logUnavailable(what string, err error) {
	if e, _, _ := refusal(err); e.Status < 500 {
		return
	}
	g.unavailableLog.Do(func() { g.log.Warn("answering unavailable", "request", what, "err", err) })
}

// decodeBody reads a JSON body within the read limit.
func (g *Gateway) decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, g.cfg.ReadLimit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return chat.Errorf(schema.CodeTooLarge, "request body is over %d bytes", g.cfg.ReadLimit)
		}
		return chat.Errorf(schema.CodeBadRequest, "read body: %v", err)
	}
	return schema.DecodeJSON(raw, v)
}

// clientAddr is the rate-limit key of anonymous requests.
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// Accounts and devices.

func (g *Gateway) handleRegister(w http.ResponseWriter, r *http.Request) error {
	var c struct {
		Username string `json:"username"`
		Password string `json:"password"`
	}
	if err := g.decodeBody(w, r, &c); err != nil {
		return err
	}
	u, err := g.core.Accounts.Register(r.Context(), c.Username, c.Password)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, u)
	return nil
}

func (g *Gateway) handleLogin(w http.ResponseWriter, r *http.Request) error {
	var c struct {
		Username   string `json:"username"`
		Password   string `json:"password"`
		DeviceName string `json:"device_name"`
	}
	if err := g.decodeBody(w, r, &c); err != nil {
		return err
	}
	t, err := g.core.Accounts.Login(r.Context(), clientAddr(r), c.Username, c.Password, c.DeviceName)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, t)
	return nil
}

func (g *Gateway) handleRefresh(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		RefreshToken string `json:"refresh_token"`
	}
	if err := g.decodeBody(w, r, &body); err != nil {
		return err
	}
	t, err := g.core.Accounts.Refresh(r.Context(), body.RefreshToken)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, t)
	return nil
}

func (g *Gateway) handleMe(w http.ResponseWriter, r *http.Request) error {
	me, err := g.core.Accounts.Me(r.Context(), caller(r))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, me)
	return nil
}

func (g *Gateway) handleDevices(w http.ResponseWriter, r *http.Request) error {
	ds, err := g.core.Accounts.Devices(r.Context(), caller(r))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"devices": ds})
	return nil
}

func (g *Gateway) handleRevokeDevice(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("device_id")
	if err := g.core.Accounts.RevokeDevice(r.Context(), caller(r).UserID, id); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"device_id": id, "revoked": true})
	return nil
}

func (g *Gateway) handleUser(w http.ResponseWriter, r *http.Request) error {
	u, err := g.core.Accounts.User(r.Context(), r.PathValue("user_id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, u)
	return nil
}

// handleUserSub serves /v1/users/by-username/{username} and
// /v1/users/{user_id}/presence.
func (g *Gateway) handleUserSub(w http.ResponseWriter, r *http.Request) error {
	first, second := r.PathValue("first"), r.PathValue("second")
	switch {
	case first == "by-username":
		u, err := g.core.Accounts.UserByUsername(r.Context(), second)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, u)
	case second == "presence":
		if _, err := g.core.Accounts.User(r.Context(), first); err != nil {
			return err
		}
		p := g.core.Presence.Of(r.Context(), caller(r).UserID, first)
		p.Type = ""
		writeJSON(w, http.StatusOK, p)
	default:
		return chat.Errorf(schema.CodeNotFound, "no such endpoint: %s %s", r.Method, r.URL.Path)
	}
	return nil
}

func (g *Gateway) handleGetPrivacy(w http.ResponseWriter, r *http.Request) error {
	p, err := g.core.Relations.Privacy(r.Context(), caller(r).UserID)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, p)
	return nil
}

func (g *Gateway) handlePrivacy(w http.ResponseWriter, r *http.Request) error {
	var body chat.Privacy
	if err := g.decodeBody(w, r, &body); err != nil {
		return err
	}
	p, err := g.core.Relations.SetPrivacy(r.Context(), caller(r).UserID, body)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, p)
	return nil
}

func (g *Gateway) handleBlocks(w http.ResponseWriter, r *http.Request) error {
	ids, err := g.core.Relations.BlockedUsers(r.Context(), caller(r).UserID)
	if err != nil {
		return err
	}
	out := make([]map[string]string, 0, len(ids))
	for _, id := range ids {
		out = append(out, map[string]string{"user_id": id})
	}
	writeJSON(w, http.StatusOK, map[string]any{"blocks": out})
	return nil
}

func (g *Gateway) handleBlock(w http.ResponseWriter, r *http.Request) error {
	return g.setBlock(w, r, true)
}

func (g *Gateway) handleUnblock(w http.ResponseWriter, r *http.Request) error {
	return g.setBlock(w, r, false)
}

func (g *Gateway) setBlock(w http.ResponseWriter, r *http.Request, block bool) error {
	other := r.PathValue("user_id")
	if err := g.core.Relations.SetBlock(r.Context(), caller(r).UserID, other, block); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"user_id": other, "blocked": block})
	return nil
}

// Conversations and messages.

func (g *Gateway) handleCreateConversation(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		PeerID string `json:"peer_id"`
	}
	if err := g.decodeBody(w, r, &body); err != nil {
		return err
	}
	conv, err := g.core.Messages.Direct(r.Context(), caller(r).UserID, body.PeerID)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]string{"conversation_id": conv})
	return nil
}

func (g *Gateway) handleConversation(w http.ResponseWriter, r *http.Request) error {
	c, err := g.core.Messages.Conversation(r.Context(), caller(r).UserID, r.PathValue("conversation_id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, c)
	return nil
}

func (g *Gateway) handleConversations(w http.ResponseWriter, r *http.Request) error {
	limit, err := chat.PageLimit(r.URL.Query().Get("limit"))
	if err != nil {
		return err
	}
	list, err := g.core.Messages.Conversations(r.Context(), caller(r).UserID, r.URL.Query().Get("cursor"), limit)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, list)
	return nil
}

func (g *Gateway) handleHistory(w http.ResponseWriter, r *http.Request) error {
	limit, err := chat.PageLimit(r.URL.Query().Get("limit"))
	if err != nil {
		return err
	}
	page, err := g.core.Messages.History(r.Context(), caller(r).UserID, r.PathValue("conversation_id"), r.URL.Query().Get("cursor"), limit)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}

func (g *Gateway) handleSend(w http.ResponseWriter, r *http.Request) error {
	var req schema.SendRequest
	if err := g.decodeBody(w, r, &req); err != nil {
		return err
	}
	ack, err := g.core.Messages.Send(r.Context(), caller(r), &req)
	if err != nil {
		return err
	}
	// 201 for retries too: the contract's answer does not depend on them.
	writeJSON(w, http.StatusCreated, ack)
	return nil
}

func (g *Gateway) handleStatus(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		Status    string `json:"status"`
		Timestamp *int64 `json:"timestamp"`
	}
	if err := g.decodeBody(w, r, &body); err != nil {
		return err
	}
	res, err := g.core.Messages.SetStatusAndWait(r.Context(), caller(r), r.PathValue("message_id"), body.Status)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

func (g *Gateway) handleDelete(w http.ResponseWriter, r *http.Request) error {
	d, err := g.core.Messages.Delete(r.Context(), caller(r), r.PathValue("message_id"), r.URL.Query().Get("for"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, d)
	return nil
}

// Long-poll.

func (g *Gateway) handleEvents(w http.ResponseWriter, r *http.Request) error {
	c := caller(r)
	q := r.URL.Query()
	timeout := chat.DefaultPollSec * time.Second
	if s := q.Get("timeout"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return chat.Errorf(schema.CodeBadRequest, "timeout must be a whole number of seconds")
		}
		timeout = time.Duration(min(n, chat.MaxPollSec)) * time.Second
	}
	release, err := g.pollCap.acquire(c.UserID)
	if err != nil {
		return err
	}
	defer release()
	// Every poll keeps the device's long-poll session (online, typing,
	// presence subscriptions) alive; its ephemeral events come after the
	// durable ones, without a cursor.
	ps, err := g.core.Polls.Begin(c)
	if err != nil {
		return err
	}
	defer ps.End()
	cur := q.Get("cursor")
	pos, from, err := g.core.Sync.Point(r.Context(), c.UserID, cur)
	if err != nil {
		return err
	}
	if cur == "" {
		writeJSON(w, http.StatusOK, map[string]any{"events": []any{}, "cursor": g.core.Sync.FormatCursor(c.UserID, pos)})
		return nil
	}
	ephemeral := ps.Take()
	if len(ephemeral) > 0 {
		timeout = 0
	}
	// An ephemeral event ends the wait as a durable one does.
	pctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	go func() {
		select {
		case <-ps.Wake():
			cancel()
		case <-g.drain.draining: // answer now: the client polls elsewhere
			cancel()
		case <-pctx.Done():
		}
	}()
	g.counters.longPolls.Add(1)
	events, last, err := g.core.Sync.Poll(pctx, c.UserID, from, timeout)
	g.counters.longPolls.Add(-1)
	if err != nil && pctx.Err() != nil && r.Context().Err() == nil {
		events, last, err = g.core.Sync.Poll(r.Context(), c.UserID, from, 0)
	}
	g.counters.polled.Add(uint64(len(events)))
	if err != nil {
		return err
	}
	ephemeral = append(ephemeral, ps.Take()...)
	w.Header().Set("Content-Type", "application/json")
	buf := make([]byte, 0, 64)
	buf = append(buf, `{"events":[`...)
	for i, e := range append(events, ephemeral...) {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, e...)
	}
	buf = append(buf, `],"cursor":"`+g.core.Sync.FormatCursor(c.UserID, last)+`"}`...)
	_, _ = w.Write(buf)
	return nil
}
