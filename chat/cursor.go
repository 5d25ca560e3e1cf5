package chat

import (
	"encoding/base64"
	"strconv"
	"strings"

	"github.com/natter-chat/natter/schema"
	"github.com/natter-chat/natter/store"
)

// Cursors are opaque to clients. Event cursors are inbox stream sequences
// in decimal; conversation-list cursors encode the last row's position.

func formatCursor(seq uint64) string { return strconv.FormatUint(seq, 10) }

func parseCursor(s string) (uint64, error) {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, schema.BadRequest("cursor is not one natter gave out")
	}
	return n, nil
}

func encodeConversationCursor(p store.ConversationPage) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(p.ActivityAt, 10) + "|" + p.ID))
}

func decodeConversationCursor(s string) (store.ConversationPage, error) {
	bad := schema.BadRequest("cursor is not one natter gave out")
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return store.ConversationPage{}, bad
	}
	at, id, ok := strings.Cut(string(raw), "|")
	n, err := strconv.ParseInt(at, 10, 64)
	if !ok || err != nil || id == "" {
		return store.ConversationPage{}, bad
	}
	return store.ConversationPage{ActivityAt: n, ID: id}, nil
}
