package schema

import (
	"net/http"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Group changes, the `change` of a `group` event.
const (
	GroupCreated       = "created"
	GroupMemberAdded   = "member_added"
	GroupMemberRemoved = "member_removed"
	GroupMemberLeft    = "member_left"
	GroupRoleChanged   = "role_changed"
	GroupRenamed       = "renamed"
)

// GroupEvent is the durable `group` event.
type GroupEvent struct {
	Type    string `json:"type"`
	GroupID string `json:"group_id"`
	Change  string `json:"change"`
	UserID  string `json:"user_id,omitempty"`
	By      string `json:"by"`
	TS      int64  `json:"ts"`
	// Extensions (docs/protocol.md): the new role of role_changed, the
	// new name of renamed and created.
	Role string `json:"role,omitempty"`
	Name string `json:"name,omitempty"`
}

// GroupConversationID is a group's conversation id: "g" and the group id,
// so either is found from the other and a group conversation is told
// from a direct one ("d...") by its first letter.
func GroupConversationID(groupID string) string { return "g" + groupID }

// GroupOfConversation returns the group id of a group conversation; ok is
// false for any other conversation id.
func GroupOfConversation(conversationID string) (string, bool) {
	if len(conversationID) < 2 || conversationID[0] != 'g' {
		return "", false
	}
	return conversationID[1:], true
}

// MaxGroupName is the longest group name, in characters.
const MaxGroupName = 100

// ValidateGroupName checks a group name: 1 to 100 characters of UTF-8,
// not blank, no control characters.
func ValidateGroupName(name string) error {
	switch {
	case !utf8.ValidString(name):
		return Errorf(http.StatusBadRequest, CodeInvalidUTF8, "name is not valid UTF-8")
	case strings.TrimSpace(name) == "":
		return BadRequest("name is required (1-100 characters)")
	case utf8.RuneCountInString(name) > MaxGroupName:
		return BadRequest("name is longer than 100 characters")
	case strings.IndexFunc(name, unicode.IsControl) >= 0:
		return BadRequest("name has control characters")
	}
	return nil
}
