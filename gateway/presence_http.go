package gateway

import (
	"net/http"

	"github.com/natter-chat/natter/schema"
)

// HTTP-only clients: typing, and presence subscriptions held by the
// device's long-poll session (chat.PollSessions); their events arrive in
// the session's polls of GET /v1/events.

func (g *Gateway) handleTyping(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		State string `json:"state"`
	}
	if err := g.decodeBody(w, r, &body); err != nil {
		return err
	}
	if err := g.core.Presence.Typing(r.Context(), caller(r).UserID, r.PathValue("conversation_id"), body.State); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

type presenceBody struct {
	UserIDs []string `json:"user_ids"`
}

func (g *Gateway) handlePresenceSubscribe(w http.ResponseWriter, r *http.Request) error {
	var body presenceBody
	if err := g.decodeBody(w, r, &body); err != nil {
		return err
	}
	ps, err := g.core.Polls.Begin(caller(r))
	if err != nil {
		return err
	}
	defer ps.End()
	snaps, err := ps.Subscribe(r.Context(), body.UserIDs)
	if err != nil {
		return err
	}
	out := make([]schema.Presence, 0, len(snaps))
	for _, p := range snaps {
		p.Type = ""
		out = append(out, p)
	}
	writeJSON(w, http.StatusOK, map[string]any{"presence": out})
	return nil
}

func (g *Gateway) handlePresenceUnsubscribe(w http.ResponseWriter, r *http.Request) error {
	var body presenceBody
	if err := g.decodeBody(w, r, &body); err != nil {
		return err
	}
	ps, err := g.core.Polls.Begin(caller(r))
	if err != nil {
		return err
	}
	defer ps.End()
	ps.Unsubscribe(body.UserIDs)
	w.WriteHeader(http.StatusNoContent)
	return nil
}
