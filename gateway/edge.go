package gateway

import (
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"strconv"

	"github.com/gorilla/websocket"

	"github.com/natter-chat/natter/schema"
)

// WebSocket close codes of the contract.
const (
	closeNormal        = websocket.CloseNormalClosure
	closeGoingAway     = websocket.CloseGoingAway
	closePolicy        = websocket.ClosePolicyViolation
	closeUnauthorized  = 4001
	closeTokenExpired  = 4002
	closeCursorExpired = 4010
	closeTooSlow       = 4029
)

// answer is what one contract code becomes at this edge.
type answer struct {
	status int // HTTP status, and the status field of a WebSocket error frame
	close  int // close code when the error ends a WebSocket (at connect)
}

// answers is the one table from the contract's codes to HTTP statuses and
// WebSocket close codes. chat's errors carry codes only.
var answers = map[string]answer{
	schema.CodeBadRequest:       {http.StatusBadRequest, closePolicy},
	schema.CodeContentTooLong:   {http.StatusBadRequest, closePolicy},
	schema.CodeInvalidUTF8:      {http.StatusBadRequest, closePolicy},
	schema.CodeUnauthorized:     {http.StatusUnauthorized, closeUnauthorized},
	schema.CodeTokenExpired:     {http.StatusUnauthorized, closeTokenExpired},
	schema.CodeForbidden:        {http.StatusForbidden, closePolicy},
	schema.CodeBlocked:          {http.StatusForbidden, closePolicy},
	schema.CodeNotMember:        {http.StatusForbidden, closePolicy},
	schema.CodeNotAdmin:         {http.StatusForbidden, closePolicy},
	schema.CodeNotFound:         {http.StatusNotFound, closePolicy},
	schema.CodeMethodNotAllowed: {http.StatusMethodNotAllowed, closePolicy},
	schema.CodeUsernameTaken:    {http.StatusConflict, closePolicy},
	schema.CodeGroupFull:        {http.StatusConflict, closePolicy},
	schema.CodeCursorExpired:    {http.StatusGone, closeCursorExpired},
	schema.CodeTooLarge:         {http.StatusRequestEntityTooLarge, closePolicy},
	schema.CodeRateLimited:      {http.StatusTooManyRequests, closePolicy},
	schema.CodeInternal:         {http.StatusInternalServerError, closePolicy},
	schema.CodeUnavailable:      {http.StatusServiceUnavailable, closeGoingAway},
}

// defaultRetryAfterMS is told with a 503 that did not say when to retry.
const defaultRetryAfterMS = 5_000

// refusal is err as this edge answers it: a contract error with its
// status, or an internal error (ok false: log it, hide it).
func refusal(err error) (e schema.Error, a answer, ok bool) {
	var ce *schema.Error
	if !errors.As(err, &ce) {
		ce, ok = schema.ErrInternal, false
	} else {
		ok = true
	}
	e = *ce
	a, known := answers[e.Code]
	if !known {
		a = answers[schema.CodeInternal]
	}
	e.Status = a.status
	if e.Status == http.StatusServiceUnavailable && e.RetryAfterMS <= 0 {
		e.RetryAfterMS = defaultRetryAfterMS
	}
	return e, a, ok
}

// writeJSON writes v with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError is the one place where errors become HTTP answers.
func writeError(w http.ResponseWriter, err error) {
	e, _, _ := refusal(err)
	if e.Status == http.StatusTooManyRequests || e.RetryAfterMS > 0 {
		w.Header().Set("Retry-After", retryAfterSeconds(e.RetryAfterMS))
	}
	writeJSON(w, e.Status, map[string]any{"error": &e})
}

// errorFrame is the one place where errors become WebSocket error frames.
func errorFrame(err error, ref string) []byte {
	e, _, _ := refusal(err)
	b, _ := json.Marshal(schema.ErrorFrame{Type: schema.TypeError, Status: e.Status, Code: e.Code, Message: e.Message,
		Ref: ref, RetryAfterMS: e.RetryAfterMS})
	return b
}

func retryAfterSeconds(ms int64) string {
	return strconv.FormatInt(int64(math.Ceil(float64(max(ms, 1))/1000)), 10)
}
