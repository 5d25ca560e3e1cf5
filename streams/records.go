package streams

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The log is not the wire: CONV holds records of its own, versioned, and
// clients see frames rendered from them (schema). A record's "v" field is
// its version. Records written before versioning have no "v" (0): they
// have the same fields as version 1, so both decode alike, and CONV's 7
// days of data written by older code stay readable.
const RecordVersion = 1

// MessageRecord is the payload of natter.conv.msg.<conversation_id>.
type MessageRecord struct {
	V               int    `json:"v"`
	MessageID       string `json:"message_id"`
	ConversationID  string `json:"conversation_id"`
	Seq             int64  `json:"seq"`
	SenderID        string `json:"sender_id"`
	RecipientID     string `json:"recipient_id"`
	MessageType     string `json:"message_type"`
	Content         string `json:"content,omitempty"`
	ClientMessageID string `json:"client_message_id"`
	ServerTS        int64  `json:"server_ts"`
}

// Receipt is the payload of natter.conv.rcpt.<conversation_id>: a reader's
// device reports a message delivered or read.
type Receipt struct {
	V              int    `json:"v,omitempty"`
	ConversationID string `json:"conversation_id"`
	UserID         string `json:"user_id"`
	DeviceID       string `json:"device_id,omitempty"`
	Seq            int64  `json:"seq"`
	Status         string `json:"status"`
	TS             int64  `json:"ts"`
}

// Deletion is the payload of natter.conv.del.<conversation_id>.
type Deletion struct {
	V              int    `json:"v,omitempty"`
	ConversationID string `json:"conversation_id"`
	Seq            int64  `json:"seq"`
	MessageID      string `json:"message_id"`
	UserID         string `json:"user_id"`
	For            string `json:"for"` // "me" or "everyone"
	TS             int64  `json:"ts"`
}

// Membership is the payload of natter.conv.mem.<conversation_id>: a
// group membership change, sequenced with the conversation's messages so
// that membership counts as of each message's seq (Sequencer.Membership).
// AsOfSeq is the conversation's last seq when the change was made: it
// counts for the messages after it.
type Membership struct {
	V              int    `json:"v"`
	ConversationID string `json:"conversation_id"`
	GroupID        string `json:"group_id"`
	Change         string `json:"change"` // created, member_added, member_removed, member_left, role_changed, renamed
	UserID         string `json:"user_id,omitempty"`
	Role           string `json:"role,omitempty"`
	By             string `json:"by"`
	TS             int64  `json:"ts"`
	AsOfSeq        int64  `json:"as_of_seq"`
	// Members are the group's members right after the change, the
	// recipients of its group event (with UserID).
	Members []string `json:"members,omitempty"`
}

// decodeRecord decodes a CONV record of any version this code reads.
func decodeRecord(data []byte, v any, version func() int) error {
	if err := json.Unmarshal(data, v); err != nil {
		return err
	}
	if n := version(); n > RecordVersion {
		return fmt.Errorf("record version %d is newer than this binary's %d", n, RecordVersion)
	}
	return nil
}

// DecodeMessage decodes a message record, today's or an older one.
func DecodeMessage(data []byte) (MessageRecord, error) {
	var m MessageRecord
	err := decodeRecord(data, &m, func() int { return m.V })
	return m, err
}

// DecodeReceipt decodes a status record.
func DecodeReceipt(data []byte) (Receipt, error) {
	var r Receipt
	err := decodeRecord(data, &r, func() int { return r.V })
	return r, err
}

// DecodeDeletion decodes a deletion record.
func DecodeDeletion(data []byte) (Deletion, error) {
	var d Deletion
	err := decodeRecord(data, &d, func() int { return d.V })
	return d, err
}

// ConvWriter publishes the records that need no seq: statuses and
// deletions.
type ConvWriter struct {
	js jetstream.JetStream
}

// NewConvWriter publishes over js.
func NewConvWriter(js jetstream.JetStream) *ConvWriter { return &ConvWriter{js: js} }

// Receipt publishes a status record.
func (w *ConvWriter) Receipt(ctx context.Context, r Receipt) error {
	r.V = RecordVersion
	data, _ := json.Marshal(r)
	if _, err := w.js.Publish(ctx, ReceiptSubject(r.ConversationID), data); err != nil {
		return fmt.Errorf("publish status of %s: %w", r.ConversationID, classify(err))
	}
	return nil
}

// Deletion publishes a deletion record.
func (w *ConvWriter) Deletion(ctx context.Context, d Deletion) error {
	d.V = RecordVersion
	data, _ := json.Marshal(d)
	if _, err := w.js.Publish(ctx, DeleteSubject(d.ConversationID), data); err != nil {
		return fmt.Errorf("publish deletion of %s: %w", d.MessageID, classify(err))
	}
	return nil
}

// classify wraps a publish error with the sentinel it belongs to.
func classify(err error) error {
	switch {
	case IsStreamFull(err):
		return fmt.Errorf("%w: %v", ErrStreamFull, err)
	case IsStorageFailure(err):
		return fmt.Errorf("%w: %v", ErrStorage, err)
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout):
		return fmt.Errorf("%w: %v", ErrTimeout, err)
	}
	return fmt.Errorf("%w: %v", ErrUnavailable, err)
}
