package chat

import (
	"context"
	"errors"
	"time"

	"github.com/natter-chat/natter/chat/auth"
	"github.com/natter-chat/natter/schema"
	"github.com/natter-chat/natter/store"
	"github.com/natter-chat/natter/streams"
)

// Accounts registers users, logs devices in and out, rotates their
// tokens and checks them.
type Accounts struct {
	st       Store
	signer   *auth.Signer
	revoke   *streams.Revocations
	sessions *Sessions
	guard    *LoginGuard
}

func newAccounts(st Store, signer *auth.Signer, revoke *streams.Revocations, sessions *Sessions, guard *LoginGuard) *Accounts {
	return &Accounts{st: st, signer: signer, revoke: revoke, sessions: sessions, guard: guard}
}

// dummyHash is checked against when a username does not exist, so a login
// takes as long for unknown users as for wrong passwords.
var dummyHash, _ = auth.HashPassword("natter-dummy-password")

// Claims identify the device behind a request.
type Claims = auth.Claims

// User is the public view of an account.
type User struct {
	UserID   string `json:"user_id"`
	Username string `json:"username"`
}

// Tokens answer a login or a refresh.
type Tokens struct {
	UserID       string `json:"user_id"`
	DeviceID     string `json:"device_id"`
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	ExpiresIn    int64  `json:"expires_in"`
}

// Device is one of a user's logins as the user sees it.
type Device struct {
	DeviceID  string `json:"device_id"`
	Name      string `json:"name"`
	CreatedAt int64  `json:"created_at"`
	Current   bool   `json:"current"`
}

// Me is who the caller is.
type Me struct {
	UserID   string `json:"user_id"`
	Username string `json:"username"`
	DeviceID string `json:"device_id"`
}

// Authenticate checks an access token: signature, expiry and revocation.
func (a *Accounts) Authenticate(token string) (Claims, error) {
	if token == "" {
		return Claims{}, Errorf(schema.CodeUnauthorized, "no access token: send Authorization: Bearer <access_token>")
	}
	c, err := a.signer.Verify(token)
	switch {
	case errors.Is(err, auth.ErrExpiredToken):
		return Claims{}, Errorf(schema.CodeTokenExpired, "access token expired: refresh it with POST /v1/auth/refresh")
	case err != nil:
		return Claims{}, Errorf(schema.CodeUnauthorized, "missing, invalid or revoked token: log in again")
	case a.revoke.IsRevoked(c.DeviceID):
		return Claims{}, Errorf(schema.CodeUnauthorized, "this device was revoked: log in again")
	}
	return c, nil
}

// Register creates an account.
func (a *Accounts) Register(ctx context.Context, username, password string) (User, error) {
	if err := schema.ValidateCredentials(username, password); err != nil {
		return User{}, err
	}
	hash, err := auth.HashPassword(password)
	if err != nil {
		return User{}, err
	}
	u := store.User{ID: schema.NewID(), Username: username, PasswordHash: hash, CreatedAt: time.Now().UnixMilli()}
	if err := a.st.CreateUser(ctx, u); errors.Is(err, store.ErrConflict) {
		return User{}, Errorf(schema.CodeUsernameTaken, "username %q is taken", username)
	} else if err != nil {
		return User{}, Translate(err, "register", RetryRequest)
	}
	return User{u.ID, u.Username}, nil
}

// Login makes a new device of the user. from is the client's address:
// failed logins are slowed per account and address (LoginGuard).
func (a *Accounts) Login(ctx context.Context, from, username, password, deviceName string) (Tokens, error) {
	if username == "" || password == "" {
		return Tokens{}, badRequest("username and password are required")
	}
	if len(deviceName) > 128 {
		return Tokens{}, badRequest("device_name is longer than 128 bytes")
	}
	if err := a.guard.Begin(username, from, time.Now()); err != nil {
		return Tokens{}, err
	}
	t, err := a.login(ctx, username, password, deviceName)
	var e *schema.Error
	switch {
	case err == nil:
		a.guard.Succeeded(username, from, time.Now())
	case errors.As(err, &e) && e.Code == schema.CodeUnauthorized:
		// Counted by Begin.
	default:
		a.guard.Undo(username, from, time.Now())
	}
	return t, err
}

func (a *Accounts) login(ctx context.Context, username, password, deviceName string) (Tokens, error) {
	wrong := Errorf(schema.CodeUnauthorized, "wrong username or password")
	u, err := a.st.UserByUsername(ctx, username)
	if errors.Is(err, store.ErrNotFound) {
		_, _ = auth.CheckPassword(dummyHash, password)
		return Tokens{}, wrong
	} else if err != nil {
		return Tokens{}, Translate(err, "login", RetryRequest)
	}
	if ok, err := auth.CheckPassword(u.PasswordHash, password); err != nil {
		return Tokens{}, err
	} else if !ok {
		return Tokens{}, wrong
	}
	now := time.Now()
	d := store.Device{ID: schema.NewID(), UserID: u.ID, Name: deviceName, CreatedAt: now.UnixMilli()}
	refresh, hash, err := auth.NewRefreshToken()
	if err != nil {
		return Tokens{}, err
	}
	if err := a.st.CreateDevice(ctx, d, hash); err != nil {
		return Tokens{}, Translate(err, "login", RetryRequest)
	}
	return a.tokens(d, refresh, now)
}

func (a *Accounts) tokens(d store.Device, refresh string, now time.Time) (Tokens, error) {
	access, err := a.signer.Issue(d.UserID, d.ID, now)
	if err != nil {
		return Tokens{}, err
	}
	return Tokens{d.UserID, d.ID, access, refresh, int64(a.signer.TTL() / time.Second)}, nil
}

// Refresh rotates a device's tokens. A used refresh token presented again
// means it leaked: the device is revoked.
func (a *Accounts) Refresh(ctx context.Context, refreshToken string) (Tokens, error) {
	if refreshToken == "" {
		return Tokens{}, badRequest("refresh_token is required")
	}
	refresh, hash, err := auth.NewRefreshToken()
	if err != nil {
		return Tokens{}, err
	}
	now := time.Now()
	d, err := a.st.RotateRefresh(ctx, auth.HashRefreshToken(refreshToken), hash, now.UnixMilli())
	switch {
	case errors.Is(err, store.ErrRefreshReused):
		// The store revoked the device; cut its connections too. d may be
		// empty here, so the device id comes from the store's answer.
		if d.ID != "" {
			_ = a.revoke.Add(ctx, d.ID)
		}
		return Tokens{}, Errorf(schema.CodeUnauthorized, "refresh token already used: the device was revoked, log in again")
	case errors.Is(err, store.ErrNotFound):
		return Tokens{}, Errorf(schema.CodeUnauthorized, "unknown or revoked refresh token: log in again")
	case err != nil:
		return Tokens{}, Translate(err, "refresh", RetryRequest)
	}
	return a.tokens(d, refresh, now)
}

// Devices lists the caller's devices.
func (a *Accounts) Devices(ctx context.Context, c Claims) ([]Device, error) {
	ds, err := a.st.Devices(ctx, c.UserID)
	if err != nil {
		return nil, Translate(err, "devices", RetryRequest)
	}
	out := make([]Device, 0, len(ds))
	for _, d := range ds {
		out = append(out, Device{d.ID, d.Name, d.CreatedAt, d.ID == c.DeviceID})
	}
	return out, nil
}

// RevokeDevice revokes one of userID's devices at once, on every node.
func (a *Accounts) RevokeDevice(ctx context.Context, userID, deviceID string) error {
	if err := a.st.RevokeDevice(ctx, userID, deviceID, time.Now().UnixMilli()); err != nil {
		return Translate(err, "device", RetryRequest)
	}
	if err := a.revoke.Add(ctx, deviceID); err != nil {
		return Translate(err, "revoke device", RetryRequest)
	}
	a.sessions.CloseDevice(deviceID)
	return nil
}

// User looks a user up by id.
func (a *Accounts) User(ctx context.Context, id string) (User, error) {
	u, err := a.st.UserByID(ctx, id)
	if err != nil {
		return User{}, Translate(err, "user", RetryRequest)
	}
	return User{u.ID, u.Username}, nil
}

// UserByUsername looks a user up by username.
func (a *Accounts) UserByUsername(ctx context.Context, username string) (User, error) {
	u, err := a.st.UserByUsername(ctx, username)
	if err != nil {
		return User{}, Translate(err, "user", RetryRequest)
	}
	return User{u.ID, u.Username}, nil
}

// Me is the caller's user and device.
func (a *Accounts) Me(ctx context.Context, c Claims) (Me, error) {
	u, err := a.User(ctx, c.UserID)
	if err != nil {
		return Me{}, err
	}
	return Me{u.UserID, u.Username, c.DeviceID}, nil
}
