package streams

import (
	"strings"
	"testing"
)

// CONV keeps 7 days of messages written by older code, without "v": they
// must decode as version 1 records.
func TestRecordsOfTheOldFormatStillDecode(t *testing.T) {
	// Byte for byte what the gateway wrote before records were versioned
	// (json.Marshal of schema.Message, of Receipt and of Deletion).
	oldMsg := `{"message_id":"dabc-3","conversation_id":"dabc","seq":3,"sender_id":"u1","recipient_id":"u2","message_type":"user","content":"hi","client_message_id":"c1","server_ts":1700000000000}`
	m, err := DecodeMessage([]byte(oldMsg))
	if err != nil {
		t.Fatal(err)
	}
	want := MessageRecord{MessageID: "dabc-3", ConversationID: "dabc", Seq: 3, SenderID: "u1", RecipientID: "u2",
		MessageType: "user", Content: "hi", ClientMessageID: "c1", ServerTS: 1700000000000}
	if m != want {
		t.Fatalf("old message decoded as %+v, want %+v", m, want)
	}
	oldRcpt := `{"conversation_id":"dabc","user_id":"u2","device_id":"d2","seq":3,"status":"read","ts":5}`
	r, err := DecodeReceipt([]byte(oldRcpt))
	if err != nil || r != (Receipt{ConversationID: "dabc", UserID: "u2", DeviceID: "d2", Seq: 3, Status: "read", TS: 5}) {
		t.Fatalf("old receipt decoded as %+v, %v", r, err)
	}
	oldDel := `{"conversation_id":"dabc","seq":3,"message_id":"dabc-3","user_id":"u1","for":"everyone","ts":6}`
	d, err := DecodeDeletion([]byte(oldDel))
	if err != nil || d != (Deletion{ConversationID: "dabc", Seq: 3, MessageID: "dabc-3", UserID: "u1", For: "everyone", TS: 6}) {
		t.Fatalf("old deletion decoded as %+v, %v", d, err)
	}
}

// A record from a newer binary is refused rather than half understood.
func TestRecordsOfANewerVersionAreRefused(t *testing.T) {
	_, err := DecodeMessage([]byte(`{"v":99,"conversation_id":"dabc","seq":1,"sender_id":"u1"}`))
	if err == nil || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("want a version error, got %v", err)
	}
}

func TestMembershipSubjectIsItsOwnKind(t *testing.T) {
	kind, conv := ParseConvSubject(MembershipSubject("gabc"))
	if kind != KindMembership || conv != "gabc" {
		t.Fatalf("ParseConvSubject = %v %q", kind, conv)
	}
	for _, k := range []Kind{KindMessage, KindReceipt, KindDelete} {
		if k == KindMembership {
			t.Fatal("membership shares a kind with another record")
		}
	}
}
