package gateway

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"

	"github.com/natter-chat/natter/chat/auth"
	"github.com/natter-chat/natter/schema"
)

type ctxKey struct{}

// caller returns the authenticated device of a request.
func caller(r *http.Request) auth.Claims {
	c, _ := r.Context().Value(ctxKey{}).(auth.Claims)
	return c
}

// authenticate checks a bearer token: signature, expiry and revocation.
func (g *Gateway) authenticate(token string) (auth.Claims, error) {
	if token == "" {
		return auth.Claims{}, schema.Errorf(http.StatusUnauthorized, schema.CodeUnauthorized, "no access token: send Authorization: Bearer <access_token>")
	}
	c, err := g.signer.Verify(token)
	switch {
	case errors.Is(err, auth.ErrExpiredToken):
		return auth.Claims{}, schema.ErrTokenExpired
	case err != nil:
		return auth.Claims{}, schema.ErrUnauthorized
	case g.revoke.isRevoked(c.DeviceID):
		return auth.Claims{}, schema.Errorf(http.StatusUnauthorized, schema.CodeUnauthorized, "this device was revoked: log in again")
	}
	return c, nil
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

// fail answers with err, logging what is not a contract error.
func (g *Gateway) fail(w http.ResponseWriter, r *http.Request, err error) {
	var e *schema.Error
	if !errors.As(err, &e) {
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
	if schema.AsError(err).Status < 500 {
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
			return schema.Errorf(http.StatusRequestEntityTooLarge, schema.CodeTooLarge, "request body is over %d bytes", g.cfg.ReadLimit)
		}
		return schema.BadRequest("read body: %v", err)
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
