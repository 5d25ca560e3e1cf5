package gateway

import (
	"net/http"
)

// Groups and message info: decode, call chat.Groups, encode.

func (g *Gateway) routeGroups(mux *http.ServeMux) {
	mux.Handle("POST /v1/groups", g.authed(g.handleCreateGroup))
	mux.Handle("GET /v1/groups/{group_id}", g.authed(g.handleGroup))
	mux.Handle("PATCH /v1/groups/{group_id}", g.authed(g.handleRenameGroup))
	mux.Handle("POST /v1/groups/{group_id}/members", g.authed(g.handleAddMembers))
	mux.Handle("DELETE /v1/groups/{group_id}/members/{user_id}", g.authed(g.handleRemoveMember))
	mux.Handle("PATCH /v1/groups/{group_id}/members/{user_id}", g.authed(g.handleSetRole))
	mux.Handle("GET /v1/messages/{message_id}/receipts", g.authed(g.handleMessageReceipts))
}

func (g *Gateway) handleCreateGroup(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		Name      string   `json:"name"`
		MemberIDs []string `json:"member_ids"`
	}
	if err := g.decodeBody(w, r, &body); err != nil {
		return err
	}
	info, err := g.core.Groups.Create(r.Context(), caller(r), body.Name, body.MemberIDs)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, info)
	return nil
}

func (g *Gateway) handleGroup(w http.ResponseWriter, r *http.Request) error {
	info, err := g.core.Groups.Get(r.Context(), caller(r), r.PathValue("group_id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, info)
	return nil
}

func (g *Gateway) handleRenameGroup(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		Name string `json:"name"`
	}
	if err := g.decodeBody(w, r, &body); err != nil {
		return err
	}
	info, err := g.core.Groups.Rename(r.Context(), caller(r), r.PathValue("group_id"), body.Name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, info)
	return nil
}

func (g *Gateway) handleAddMembers(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		UserIDs []string `json:"user_ids"`
	}
	if err := g.decodeBody(w, r, &body); err != nil {
		return err
	}
	info, err := g.core.Groups.Add(r.Context(), caller(r), r.PathValue("group_id"), body.UserIDs)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, info)
	return nil
}

func (g *Gateway) handleRemoveMember(w http.ResponseWriter, r *http.Request) error {
	if _, err := g.core.Groups.Remove(r.Context(), caller(r), r.PathValue("group_id"), r.PathValue("user_id")); err != nil {
		return err
	}
	// docs/protocol.md's decision: removing (and leaving) answers 204.
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (g *Gateway) handleSetRole(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		Role string `json:"role"`
	}
	if err := g.decodeBody(w, r, &body); err != nil {
		return err
	}
	info, err := g.core.Groups.SetRole(r.Context(), caller(r), r.PathValue("group_id"), r.PathValue("user_id"), body.Role)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, info)
	return nil
}

func (g *Gateway) handleMessageReceipts(w http.ResponseWriter, r *http.Request) error {
	res, err := g.core.Groups.Receipts(r.Context(), g.core.Messages, caller(r), r.PathValue("message_id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}
