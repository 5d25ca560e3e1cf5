package gateway

import (
	"testing"
)

// Contacts are users who exchanged a message (issue 12, hole 4): a
// stranger who only opens a conversation with alice (POST
// /v1/conversations) sees neither her "contacts" last seen nor, with
// online "same_as_last_seen", her online status, and is not in her
// conversation list; after one message each way, both are.
func TestOpeningAConversationMakesNoContact(t *testing.T) {
	n, _ := startNode(t, nodeOptions{})
	alice, mallory := n.user("alice"), n.user("mallory")
	if r := n.do("PUT", "/v1/me/privacy", alice.token, map[string]string{"last_seen": "contacts", "online": "same_as_last_seen"}); r.status != 200 {
		t.Fatalf("privacy: %d %s", r.status, r.raw)
	}
	presence := func(viewer, of user) map[string]any {
		t.Helper()
		r := n.do("GET", "/v1/users/"+of.id+"/presence", viewer.token, nil)
		if r.status != 200 {
			t.Fatalf("presence: %d %s", r.status, r.raw)
		}
		return r.body
	}
	listed := func(viewer user, conv string) bool {
		t.Helper()
		r := n.do("GET", "/v1/conversations", viewer.token, nil)
		if r.status != 200 {
			t.Fatalf("list: %d %s", r.status, r.raw)
		}
		for _, c := range r.body["conversations"].([]any) {
			if c.(map[string]any)["conversation_id"] == conv {
				return true
			}
		}
		return false
	}
	r := n.do("POST", "/v1/conversations", mallory.token, map[string]string{"peer_id": alice.id})
	if r.status != 200 {
		t.Fatalf("mallory opens a conversation: %d %s", r.status, r.raw)
	}
	conv := r.body["conversation_id"].(string)

	wa := n.dial(alice)
	if p := presence(mallory, alice); p["status"] != "offline" || p["last_seen"] != nil {
		t.Errorf("mallory (no message) sees alice online: %v, want offline without last_seen", p)
	}
	_ = wa.conn.Close()
	eventually(t, "alice's last seen", func() bool { return presence(alice, alice)["last_seen"] != nil })
	if p := presence(mallory, alice); p["last_seen"] != nil {
		t.Errorf("mallory (no message) sees alice's contacts-only last seen: %v", p)
	}
	if listed(alice, conv) {
		t.Error("mallory's empty conversation is in alice's list")
	}
	if !listed(mallory, conv) {
		t.Error("the conversation mallory opened is not in his own list")
	}

	if r := n.send(mallory, alice, "m1"); r.status != 201 {
		t.Fatalf("mallory's message: %d %s", r.status, r.raw)
	}
	if r := n.send(alice, mallory, "a1"); r.status != 201 {
		t.Fatalf("alice's reply: %d %s", r.status, r.raw)
	}
	eventually(t, "the conversation in alice's list", func() bool { return listed(alice, conv) })
	eventually(t, "alice's last seen for a contact", func() bool { return presence(mallory, alice)["last_seen"] != nil })
	n.dial(alice)
	if p := presence(mallory, alice); p["status"] != "online" {
		t.Errorf("a contact sees alice %v, want online", p)
	}
}
