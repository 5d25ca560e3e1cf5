package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"reflect"
	"regexp"
	"strings"
	"unicode/utf8"
)

// Contract limits.
const (
	MaxContentBytes         = 65536
	MaxClientMessageIDBytes = 128
	MaxRefBytes             = 128
	MaxIDBytes              = 128
	MaxPresenceSubscribe    = 1000
)

// DecodeJSON decodes one JSON object from raw into v. It refuses invalid
// UTF-8 (encoding/json would silently replace it) and trailing data.
func DecodeJSON(raw []byte, v any) error {
	if !utf8.Valid(raw) {
		return Errorf(http.StatusBadRequest, CodeInvalidUTF8, "body is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return decodeError(err)
	}
	// More() misses a stray '}' or ']', so look at what is left directly.
	// Only JSON's four whitespace bytes may follow; bytes.TrimSpace would
	// also pass \v, \f and U+0085, which no JSON parser accepts.
	if len(bytes.TrimLeft(raw[dec.InputOffset():], " \t\r\n")) > 0 {
		return BadRequest("malformed JSON: data after the object")
	}
	return nil
}

// fieldTypeError is a body that is JSON but has a field of the wrong
// type: the rest of the object was decoded (encoding/json goes on after
// such a field), so a frame's ref can still be echoed.
type fieldTypeError struct{ refusal *Error }

func (e fieldTypeError) Error() string { return e.refusal.Error() }
func (e fieldTypeError) Unwrap() error { return e.refusal }

// decodeError says what is wrong with a body in the client's terms: the
// field and the types involved, never Go's type names.
func decodeError(err error) error {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te) && te.Field == "":
		return BadRequest("the body must be a JSON object, not %s", te.Value)
	case errors.As(err, &te):
		return fieldTypeError{refusal: BadRequest("field %q must be %s, not %s", jsonPath(te.Field), jsonKind(te.Type), te.Value)}
	case errors.As(err, &se):
		return BadRequest("malformed JSON at byte %d: %s", se.Offset, strings.TrimPrefix(se.Error(), "json: "))
	case errors.Is(err, io.EOF):
		return BadRequest("malformed JSON: the body is empty")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return BadRequest("malformed JSON: the body ends before the object does")
	}
	return BadRequest("malformed JSON: %s", strings.TrimPrefix(err.Error(), "json: "))
}

// jsonPath drops the names of embedded Go structs from a field path:
// encoding/json includes them, and every JSON name of the contract is
// lower case.
func jsonPath(field string) string {
	parts := strings.Split(field, ".")
	out := parts[:0]
	for _, p := range parts {
		if p != "" && (p[0] < 'A' || p[0] > 'Z') {
			out = append(out, p)
		}
	}
	return strings.Join(out, ".")
}

// jsonKind names a Go type as the JSON a client should have sent.
func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	case reflect.Pointer:
		return jsonKind(t.Elem())
	}
	return "another type"
}

// DecodeFrame decodes a WebSocket client frame and checks what every frame
// must satisfy: a known type and a ref of at most 128 bytes. The frame's
// own fields are checked by the Validate* function of its type.
func DecodeFrame(raw []byte) (ClientFrame, error) {
	var f ClientFrame
	if err := DecodeJSON(raw, &f); err != nil {
		var fte fieldTypeError
		if !errors.As(err, &fte) {
			return ClientFrame{}, err
		}
		// The other fields decoded: answer with the frame's ref.
		ref := f.Ref
		if ref == "" && f.Type == TypeSend {
			ref = f.ClientMessageID
		}
		if len(ref) > MaxRefBytes {
			ref = ""
		}
		return ClientFrame{Ref: ref}, fte.refusal
	}
	if len(f.Ref) > MaxRefBytes {
		f.Ref = ""
		return f, BadRequest("ref is longer than %d bytes", MaxRefBytes)
	}
	switch f.Type {
	case TypeSend:
		if f.Ref == "" {
			f.Ref = f.ClientMessageID
			if len(f.Ref) > MaxRefBytes {
				f.Ref = ""
			}
		}
	case TypeReceipt, TypeTyping, TypePresenceSubscribe, TypePresenceUnsubscrib, TypePing:
	case "":
		return f, BadRequest("frame has no type")
	default:
		return f, BadRequest("unknown frame type %q", f.Type)
	}
	return f, nil
}

// ValidateSend checks a send request against the contract's limits.
// callerID is the authenticated user.
func ValidateSend(r *SendRequest, callerID string) error {
	switch {
	case r.ClientMessageID == "":
		return BadRequest("client_message_id is required")
	case len(r.ClientMessageID) > MaxClientMessageIDBytes:
		return BadRequest("client_message_id is longer than %d bytes", MaxClientMessageIDBytes)
	case r.RecipientID == "":
		return BadRequest("recipient_id is required")
	case len(r.RecipientID) > MaxIDBytes:
		return BadRequest("recipient_id is longer than %d bytes", MaxIDBytes)
	case r.MessageType != MessageTypeUser && r.MessageType != MessageTypeGroup:
		return BadRequest(`message_type must be "user" or "group"`)
	case r.Timestamp == nil:
		return BadRequest("timestamp is required (client time, ms since the epoch)")
	case r.Content == "":
		return BadRequest("content is required and may not be empty")
	case len(r.Content) > MaxContentBytes:
		return Errorf(http.StatusBadRequest, CodeContentTooLong, "content is %d bytes; the limit is %d", len(r.Content), MaxContentBytes)
	case !utf8.ValidString(r.Content):
		return Errorf(http.StatusBadRequest, CodeInvalidUTF8, "content is not valid UTF-8")
	case r.SenderID != "" && r.SenderID != callerID:
		return Errorf(http.StatusForbidden, CodeForbidden, "sender_id must be your own user id")
	}
	return nil
}

// ValidateStatus checks a delivered/read status.
func ValidateStatus(status string) error {
	if status != StatusDelivered && status != StatusRead {
		return BadRequest(`status must be "delivered" or "read"`)
	}
	return nil
}

var usernameRE = regexp.MustCompile(`^[a-z0-9_.]{3,32}$`)

// ValidateCredentials checks a registration.
func ValidateCredentials(username, password string) error {
	if !usernameRE.MatchString(username) {
		return BadRequest("username must be 3-32 characters of a-z 0-9 _ .")
	}
	if utf8.RuneCountInString(password) < 8 {
		return BadRequest("password must be at least 8 characters")
	}
	if len(password) > 1024 {
		return BadRequest("password is longer than 1024 bytes")
	}
	return nil
}

// ValidID reports whether s can be an id in a path: ids are opaque to
// clients but always non-empty, short and printable.
func ValidID(s string) bool {
	if s == "" || len(s) > MaxIDBytes {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}
