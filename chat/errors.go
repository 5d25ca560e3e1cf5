package chat

import (
	"errors"
	"fmt"
	"time"

	"github.com/natter-chat/natter/schema"
	"github.com/natter-chat/natter/store"
	"github.com/natter-chat/natter/streams"
)

// Errors of chat carry the contract's machine code (schema.Code*) and a
// message for the client, never an HTTP status: each transport maps the
// code to its own answer (gateway's table). Errors without a code are
// internal: transports log them and answer "internal".

// Errorf is a refusal with a contract code.
func Errorf(code, format string, args ...any) *schema.Error {
	return &schema.Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

func badRequest(format string, args ...any) *schema.Error {
	return Errorf(schema.CodeBadRequest, format, args...)
}

func notFound(format string, args ...any) *schema.Error {
	return Errorf(schema.CodeNotFound, format, args...)
}

// Retry hints: what a client should do again after an unavailable error,
// named for each kind of request so that none is told something that does
// not apply to it.
const (
	RetrySend    = "retry later with the same client_message_id"
	RetryRequest = "retry the request later"
	RetryConnect = "reconnect later with your cursor"
)

// unavailable is a 503-class refusal: the cause is kept for the log
// (errors.Unwrap), the client sees msg and retry.
type unavailable struct {
	refusal *schema.Error
	cause   error
}

func (u *unavailable) Unwrap() []error { return []error{u.refusal, u.cause} }
func (u *unavailable) Error() string   { return u.refusal.Error() + ": " + u.cause.Error() }

// Unavailable says the server cannot do it now; msg says why in the
// client's terms, retry what to do (RetrySend, RetryRequest, ...).
func Unavailable(cause error, after time.Duration, msg, retry string) error {
	e := Errorf(schema.CodeUnavailable, "%s; %s", msg, retry)
	e.RetryAfterMS = after.Milliseconds()
	return &unavailable{refusal: e, cause: cause}
}

// Translate turns an error of the store or of streams into a contract
// error, once, where chat calls them; what names the thing looked for or
// done ("user", "conversation"), retry the client's retry hint. Contract
// errors pass through; other errors stay internal.
func Translate(err error, what, retry string) error {
	var e *schema.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &e):
		return err
	case errors.Is(err, store.ErrNotFound):
		return notFound("%s not found", what)
	case errors.Is(err, store.ErrUnavailable):
		return Unavailable(err, 30*time.Second,
			"the server cannot write to its database now: its disk may be full or failing (operators: free space in --data, see the log)", retry)
	case errors.Is(err, streams.ErrStreamFull):
		return Unavailable(err, 30*time.Second,
			"the message log is full: new messages are refused until retention frees space (operators: raise --stream-max-bytes)", retry)
	case errors.Is(err, streams.ErrStorage):
		return Unavailable(err, 30*time.Second,
			"the server cannot store messages: its disk is full or failing (operators: free space in --data, see the log)", retry)
	case errors.Is(err, streams.ErrTimeout):
		return Unavailable(err, 5*time.Second,
			"the message log did not answer in time: the server is overloaded or cannot write to its disk (operators: see the log)", retry)
	case errors.Is(err, streams.ErrUnavailable):
		return Unavailable(err, 5*time.Second, "the message log is unavailable", retry)
	}
	return fmt.Errorf("%s: %w", what, err)
}
