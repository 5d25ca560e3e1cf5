package chat

import (
	"strings"
	"testing"

	"github.com/natter-chat/natter/streams"
)

// Node ids are key-safe and fresh at every start, so a restarted node
// never revives its predecessor's lease.
func TestNewNodeID(t *testing.T) {
	seen := map[string]bool{}
	for _, prefix := range []string{"", "gw-1", "bad.name", "a b", strings.Repeat("x", 80)} {
		id := newNodeID(prefix)
		if !streams.ValidNodeID(id) {
			t.Errorf("prefix %q: id %q is not key-safe", prefix, id)
		}
		if seen[id] {
			t.Errorf("id %q twice", id)
		}
		seen[id] = true
	}
	if id := newNodeID("gw-1"); !strings.HasPrefix(id, "gw-1-") {
		t.Errorf("id %q does not carry its prefix", id)
	}
}
