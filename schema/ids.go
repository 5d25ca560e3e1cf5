package schema

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"

	"github.com/oklog/ulid/v2"
)

// NewID returns a new sortable unique id (a ULID) for users and devices.
func NewID() string { return ulid.MustNew(ulid.Now(), rand.Reader).String() }

// DirectConversationID is the one conversation id two users share (a may
// equal b): both sides derive it without coordination.
func DirectConversationID(a, b string) string {
	if a > b {
		a, b = b, a
	}
	h := sha256.Sum256([]byte(a + "\x00" + b))
	return "d" + hex.EncodeToString(h[:16])
}

// MessageID names a message by its place in its conversation, so any node
// can locate a message from its id alone, before the store has it.
func MessageID(conversationID string, seq int64) string {
	return conversationID + "-" + strconv.FormatInt(seq, 10)
}

// ParseMessageID splits a message id; ok is false for anything natter
// did not make (and so for anything unsafe in a subject).
func ParseMessageID(id string) (conversationID string, seq int64, ok bool) {
	i := strings.LastIndexByte(id, '-')
	if i <= 0 || !ValidConversationID(id[:i]) {
		return "", 0, false
	}
	seq, err := strconv.ParseInt(id[i+1:], 10, 64)
	if err != nil || seq < 1 || strconv.FormatInt(seq, 10) != id[i+1:] {
		return "", 0, false
	}
	return id[:i], seq, true
}

// ValidConversationID reports whether s has the shape of a conversation id
// natter makes: a letter and lowercase hex or ULID characters, nothing
// that means something in a NATS subject.
func ValidConversationID(s string) bool {
	if len(s) < 2 || len(s) > 64 {
		return false
	}
	return isSubjectSafe(s)
}

// ValidUserID reports whether s can be a user id (safe in a subject).
func ValidUserID(s string) bool { return len(s) > 0 && len(s) <= 64 && isSubjectSafe(s) }

func isSubjectSafe(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}
