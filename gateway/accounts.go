package gateway

import (
	"errors"
	"net/http"
	"time"

	"github.com/natter-chat/natter/chat/auth"
	"github.com/natter-chat/natter/schema"
	"github.com/natter-chat/natter/store"
)

// dummyHash is checked against when a username does not exist, so a login
// takes as long for unknown users as for wrong passwords.
var dummyHash, _ = auth.HashPassword("natter-dummy-password")

type credentials struct {
	Username   string `json:"username"`
	Password   string `json:"password"`
	DeviceName string `json:"device_name"`
}

type userJSON struct {
	UserID   string `json:"user_id"`
	Username string `json:"username"`
}

func (g *Gateway) handleRegister(w http.ResponseWriter, r *http.Request) {
	if err := g.register(w, r); err != nil {
		g.fail(w, r, err)
	}
}

func (g *Gateway) register(w http.ResponseWriter, r *http.Request) error {
	if err := g.authLimit.allow(clientAddr(r)); err != nil {
		return err
	}
	var c credentials
	if err := g.decodeBody(w, r, &c); err != nil {
		return err
	}
	if err := schema.ValidateCredentials(c.Username, c.Password); err != nil {
		return err
	}
	hash, err := auth.HashPassword(c.Password)
	if err != nil {
		return err
	}
	u := store.User{ID: schema.NewID(), Username: c.Username, PasswordHash: hash, CreatedAt: time.Now().UnixMilli()}
	if err := g.st.CreateUser(r.Context(), u); errors.Is(err, store.ErrConflict) {
		return schema.Errorf(http.StatusConflict, schema.CodeUsernameTaken, "username %q is taken", c.Username)
	} else if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, userJSON{u.ID, u.Username})
	return nil
}

type tokensJSON struct {
	UserID       string `json:"user_id"`
	DeviceID     string `json:"device_id"`
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	ExpiresIn    int64  `json:"expires_in"`
}

func (g *Gateway) handleLogin(w http.ResponseWriter, r *http.Request) {
	if err := g.login(w, r); err != nil {
		g.fail(w, r, err)
	}
}

func (g *Gateway) login(w http.ResponseWriter, r *http.Request) error {
	if err := g.authLimit.allow(clientAddr(r)); err != nil {
		return err
	}
	var c credentials
	if err := g.decodeBody(w, r, &c); err != nil {
		return err
	}
	if c.Username == "" || c.Password == "" {
		return schema.BadRequest("username and password are required")
	}
	if len(c.DeviceName) > 128 {
		return schema.BadRequest("device_name is longer than 128 bytes")
	}
	wrong := schema.Errorf(http.StatusUnauthorized, schema.CodeUnauthorized, "wrong username or password")
	u, err := g.st.UserByUsername(r.Context(), c.Username)
	if errors.Is(err, store.ErrNotFound) {
		_, _ = auth.CheckPassword(dummyHash, c.Password)
		return wrong
	} else if err != nil {
		return err
	}
	if ok, err := auth.CheckPassword(u.PasswordHash, c.Password); err != nil {
		return err
	} else if !ok {
		return wrong
	}
	now := time.Now()
	d := store.Device{ID: schema.NewID(), UserID: u.ID, Name: c.DeviceName, CreatedAt: now.UnixMilli()}
	refresh, hash, err := auth.NewRefreshToken()
	if err != nil {
		return err
	}
	if err := g.st.CreateDevice(r.Context(), d, hash); err != nil {
		return err
	}
	return g.writeTokens(w, d, refresh, now)
}

func (g *Gateway) writeTokens(w http.ResponseWriter, d store.Device, refresh string, now time.Time) error {
	access, err := g.signer.Issue(d.UserID, d.ID, now)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, tokensJSON{d.UserID, d.ID, access, refresh, int64(g.signer.TTL() / time.Second)})
	return nil
}

func (g *Gateway) handleRefresh(w http.ResponseWriter, r *http.Request) {
	if err := g.refresh(w, r); err != nil {
		g.fail(w, r, err)
	}
}

func (g *Gateway) refresh(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		RefreshToken string `json:"refresh_token"`
	}
	if err := g.decodeBody(w, r, &body); err != nil {
		return err
	}
	if body.RefreshToken == "" {
		return schema.BadRequest("refresh_token is required")
	}
	refresh, hash, err := auth.NewRefreshToken()
	if err != nil {
		return err
	}
	now := time.Now()
	d, err := g.st.RotateRefresh(r.Context(), auth.HashRefreshToken(body.RefreshToken), hash, now.UnixMilli())
	switch {
	case errors.Is(err, store.ErrRefreshReused):
		// A used token presented again means it leaked: the store revoked
		// the device; cut its connections too. d may be empty here, so the
		// device id comes from the store's answer when it has one.
		if d.ID != "" {
			_ = g.revoke.add(r.Context(), d.ID)
		}
		return schema.Errorf(http.StatusUnauthorized, schema.CodeUnauthorized, "refresh token already used: the device was revoked, log in again")
	case errors.Is(err, store.ErrNotFound):
		return schema.Errorf(http.StatusUnauthorized, schema.CodeUnauthorized, "unknown or revoked refresh token: log in again")
	case err != nil:
		return err
	}
	return g.writeTokens(w, d, refresh, now)
}

type deviceJSON struct {
	DeviceID  string `json:"device_id"`
	Name      string `json:"name"`
	CreatedAt int64  `json:"created_at"`
	Current   bool   `json:"current"`
}

func (g *Gateway) handleDevices(w http.ResponseWriter, r *http.Request) error {
	c := caller(r)
	ds, err := g.st.Devices(r.Context(), c.UserID)
	if err != nil {
		return err
	}
	out := make([]deviceJSON, 0, len(ds))
	for _, d := range ds {
		out = append(out, deviceJSON{d.ID, d.Name, d.CreatedAt, d.ID == c.DeviceID})
	}
	writeJSON(w, http.StatusOK, map[string]any{"devices": out})
	return nil
}

func (g *Gateway) handleRevokeDevice(w http.ResponseWriter, r *http.Request) error {
	c := caller(r)
	id := r.PathValue("device_id")
	if err := g.st.RevokeDevice(r.Context(), c.UserID, id, time.Now().UnixMilli()); err != nil {
		return fromStore(err, "device")
	}
	if err := g.revoke.add(r.Context(), id); err != nil {
		return err
	}
	g.closeDevice(id)
	writeJSON(w, http.StatusOK, map[string]any{"device_id": id, "revoked": true})
	return nil
}

func (g *Gateway) handleUser(w http.ResponseWriter, r *http.Request) error {
	u, err := g.st.UserByID(r.Context(), r.PathValue("user_id"))
	if err != nil {
		return fromStore(err, "user")
	}
	writeJSON(w, http.StatusOK, userJSON{u.ID, u.Username})
	return nil
}

// handleUserSub serves /v1/users/by-username/{username} and
// /v1/users/{user_id}/presence.
func (g *Gateway) handleUserSub(w http.ResponseWriter, r *http.Request) error {
	first, second := r.PathValue("first"), r.PathValue("second")
	switch {
	case first == "by-username":
		u, err := g.st.UserByUsername(r.Context(), second)
		if err != nil {
			return fromStore(err, "user")
		}
		writeJSON(w, http.StatusOK, userJSON{u.ID, u.Username})
	case second == "presence":
		if _, err := g.st.UserByID(r.Context(), first); err != nil {
			return fromStore(err, "user")
		}
		p := g.presence(r.Context(), caller(r).UserID, first)
		p.Type = ""
		writeJSON(w, http.StatusOK, p)
	default:
		return schema.Errorf(http.StatusNotFound, schema.CodeNotFound, "no such endpoint: %s %s", r.Method, r.URL.Path)
	}
	return nil
}

func (g *Gateway) handlePrivacy(w http.ResponseWriter, r *http.Request) error {
	var body struct {
		LastSeen string `json:"last_seen"`
	}
	if err := g.decodeBody(w, r, &body); err != nil {
		return err
	}
	switch body.LastSeen {
	case "everyone", "contacts", "nobody":
	default:
		return schema.BadRequest(`last_seen must be "everyone", "contacts" or "nobody"`)
	}
	if err := g.st.SetLastSeenPrivacy(r.Context(), caller(r).UserID, body.LastSeen); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, body)
	return nil
}

func (g *Gateway) handleBlock(w http.ResponseWriter, r *http.Request) error {
	return g.setBlock(w, r, true)
}

func (g *Gateway) handleUnblock(w http.ResponseWriter, r *http.Request) error {
	return g.setBlock(w, r, false)
}

func (g *Gateway) setBlock(w http.ResponseWriter, r *http.Request, block bool) error {
	me, other := caller(r).UserID, r.PathValue("user_id")
	if _, err := g.st.UserByID(r.Context(), other); err != nil {
		return fromStore(err, "user")
	}
	var err error
	if block {
		err = g.st.Block(r.Context(), me, other)
	} else {
		err = g.st.Unblock(r.Context(), me, other)
	}
	if err != nil {
		return err
	}
	if err := g.announceBlockChange(me, other); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"user_id": other, "blocked": block})
	return nil
}
