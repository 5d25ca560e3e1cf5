package streams

// Receipt is the payload of natter.conv.rcpt.<conversation_id>: a reader's
// device reports a message delivered or read.
type Receipt struct {
	ConversationID string `json:"conversation_id"`
	UserID         string `json:"user_id"`
	DeviceID       string `json:"device_id,omitempty"`
	Seq            int64  `json:"seq"`
	Status         string `json:"status"`
	TS             int64  `json:"ts"`
}

// Deletion is the payload of natter.conv.del.<conversation_id>.
type Deletion struct {
	ConversationID string `json:"conversation_id"`
	Seq            int64  `json:"seq"`
	MessageID      string `json:"message_id"`
	UserID         string `json:"user_id"`
	For            string `json:"for"` // "me" or "everyone"
	TS             int64  `json:"ts"`
}
