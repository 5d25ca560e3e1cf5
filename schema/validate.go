package schema

import (
	"bytes"
	"encoding/json"
	"net/http"
	"regexp"
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
		return BadRequest("malformed JSON: %v", err)
	}
	// More() misses a stray '}' or ']', so look at what is left directly.
	// Only JSON's four whitespace bytes may follow; bytes.TrimSpace would
	// also pass \v, \f and U+0085, which no JSON parser accepts.
	if len(bytes.TrimLeft(raw[dec.InputOffset():], " \t\r\n")) > 0 {
		return BadRequest("malformed JSON: data after the object")
	}
	return nil
}

// DecodeFrame decodes a WebSocket client frame and checks what every frame
// must satisfy: a known type and a ref of at most 128 bytes. The frame's
// own fields are checked by the Validate* function of its type.
func DecodeFrame(raw []byte) (ClientFrame, error) {
	var f ClientFrame
	if err := DecodeJSON(raw, &f); err != nil {
		return ClientFrame{}, err
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
