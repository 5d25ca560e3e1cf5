package gateway

import (
	"net/http"

	"github.com/natter-chat/natter/chat"
)

// pushRoutes adds push registration, mutes and notification settings.
// Registration and mutes answer 204 (docs/protocol.md, decision 18);
// notification settings answer the settings in force, as privacy does.
func (g *Gateway) pushRoutes(mux *http.ServeMux) {
	mux.Handle("PUT /v1/me/devices/{device_id}/push", g.authed(g.handleRegisterPush))
	mux.Handle("DELETE /v1/me/devices/{device_id}/push", g.authed(g.handleUnregisterPush))
	mux.Handle("PUT /v1/conversations/{conversation_id}/mute", g.authed(g.handleMute))
	mux.Handle("DELETE /v1/conversations/{conversation_id}/mute", g.authed(g.handleUnmute))
	mux.Handle("GET /v1/me/notifications", g.authed(g.handleGetNotifications))
	mux.Handle("PUT /v1/me/notifications", g.authed(g.handleNotifications))
}

func (g *Gateway) handleRegisterPush(w http.ResponseWriter, r *http.Request) error {
	var body chat.PushRegistration
	if err := g.decodeBody(w, r, &body); err != nil {
		return err
	}
	if _, err := g.core.Push.RegisterPush(r.Context(), caller(r).UserID, r.PathValue("device_id"), body); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (g *Gateway) handleUnregisterPush(w http.ResponseWriter, r *http.Request) error {
	if err := g.core.Push.UnregisterPush(r.Context(), caller(r).UserID, r.PathValue("device_id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (g *Gateway) handleMute(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		Until *int64 `json:"until"`
	}
	if err := g.decodeBody(w, r, &body); err != nil {
		return err
	}
	if _, err := g.core.Push.SetMute(r.Context(), caller(r).UserID, r.PathValue("conversation_id"), body.Until); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (g *Gateway) handleUnmute(w http.ResponseWriter, r *http.Request) error {
	if _, err := g.core.Push.DeleteMute(r.Context(), caller(r).UserID, r.PathValue("conversation_id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (g *Gateway) handleGetNotifications(w http.ResponseWriter, r *http.Request) error {
	n, err := g.core.Push.Notifications(r.Context(), caller(r).UserID)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, n)
	return nil
}

func (g *Gateway) handleNotifications(w http.ResponseWriter, r *http.Request) error {
	var body chat.NotificationsUpdate
	if err := g.decodeBody(w, r, &body); err != nil {
		return err
	}
	n, err := g.core.Push.SetNotifications(r.Context(), caller(r).UserID, body)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, n)
	return nil
}
