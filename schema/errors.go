// Package schema holds natter's wire types, their validation and the error
// codes of the client contract (shared/protocol.md): the client contract
// only. Storage migrations belong to their adapter (store/sqlite/migrations).
package schema

import (
	"errors"
	"fmt"
	"net/http"
)

// Error is a refusal a client can act on: a machine code from the
// contract and a message. Status is set by schema's own validation (the
// contract pairs codes with statuses) and left zero by chat; gateway's
// table (gateway/edge.go) decides the status every transport answers. It
// renders {"error":{"code","message"}} over HTTP and an error frame over
// WebSocket.
type Error struct {
	Status       int    `json:"-"`
	Code         string `json:"code"`
	Message      string `json:"message"`
	RetryAfterMS int64  `json:"-"`
}

func (e *Error) Error() string {
	if e.Status == 0 { // chat's errors carry a code only; the edge picks the status
		return fmt.Sprintf("%s: %s", e.Code, e.Message)
	}
	return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message)
}

// Is makes errors.Is match any *Error with the same code.
func (e *Error) Is(target error) bool {
	var t *Error
	if errors.As(target, &t) {
		return t.Code == e.Code
	}
	return false
}

// Errorf builds an *Error.
func Errorf(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// Contract error codes.
const (
	CodeBadRequest     = "bad_request"
	CodeContentTooLong = "content_too_long"
	CodeInvalidUTF8    = "invalid_utf8"
	CodeUnauthorized   = "unauthorized"
	CodeTokenExpired   = "token_expired"
	CodeForbidden      = "forbidden"
	CodeBlocked        = "blocked"
	CodeNotMember      = "not_member"
	CodeNotAdmin       = "not_admin"
	CodeNotFound       = "not_found"
	CodeUsernameTaken  = "username_taken"
	CodeGroupFull      = "group_full"
	CodeCursorExpired  = "cursor_expired"
	CodeTooLarge       = "too_large"
	CodeRateLimited    = "rate_limited"
	// Extensions (documented in docs/protocol.md).
	CodeUnavailable      = "unavailable"
	CodeMethodNotAllowed = "method_not_allowed"
	CodeInternal         = "internal"
)

// Sentinels for errors.Is; their messages are generic, handlers usually
// build a more specific one with Errorf.
var (
	ErrNotFound     = Errorf(http.StatusNotFound, CodeNotFound, "not found")
	ErrUnauthorized = Errorf(http.StatusUnauthorized, CodeUnauthorized, "missing, invalid or revoked token: log in again")
	ErrTokenExpired = Errorf(http.StatusUnauthorized, CodeTokenExpired, "access token expired: refresh it with POST /v1/auth/refresh")
	ErrForbidden    = Errorf(http.StatusForbidden, CodeForbidden, "forbidden")
	ErrBlocked      = Errorf(http.StatusForbidden, CodeBlocked, "one of you has blocked the other")
	ErrUnavailable  = Errorf(http.StatusServiceUnavailable, CodeUnavailable, "temporarily unavailable: retry with the same client_message_id")
	ErrInternal     = Errorf(http.StatusInternalServerError, CodeInternal, "internal error")
)

// BadRequest is a 400 bad_request with a message.
func BadRequest(format string, args ...any) *Error {
	return Errorf(http.StatusBadRequest, CodeBadRequest, format, args...)
}

// AsError converts any error to an *Error, mapping unknown ones to 500.
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return ErrInternal
}
