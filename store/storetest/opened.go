package storetest

import (
	"slices"
	"testing"

	"github.com/natter-chat/natter/store"
)

// testEmptyConversationListedForOpener: EnsureDirect's a opens the
// conversation. An empty one is in the opener's list only, so a stranger
// cannot put themselves into anyone's list; the peer still sees it by id
// (a participant), lists it once they open it too or once it has a
// message. Self-chat is listed at once.
func testEmptyConversationListedForOpener(t *testing.T, s store.Store) {
	ctx := t.Context()
	a, b, c := user(t, s, "alice"), user(t, s, "bob"), user(t, s, "mallory")
	listed := func(viewer string) []string {
		t.Helper()
		cs, err := s.Conversations(ctx, viewer, store.ConversationPage{}, 100)
		ok(t, err)
		return ids(cs)
	}
	direct(t, s, "cAB", a, b, 10)
	direct(t, s, "cMA", c, a, 20) // the stranger opens one with alice
	direct(t, s, "cSelf", b, b, 30)
	if got := listed(a); !slices.Equal(got, []string{"cAB"}) {
		t.Fatalf("alice's list = %v, want [cAB]: not mallory's empty conversation", got)
	}
	if got := listed(c); !slices.Equal(got, []string{"cMA"}) {
		t.Fatalf("mallory's list = %v, want [cMA]: the opener sees it", got)
	}
	if got := listed(b); !slices.Equal(got, []string{"cSelf"}) {
		t.Fatalf("bob's list = %v, want [cSelf]", got)
	}
	if got := summary(t, s, "cAB", b); got.PeerID != a {
		t.Fatalf("bob's view of cAB by id = %+v, want peer alice", got)
	}

	// bob opens it too: listed for him, still empty.
	direct(t, s, "cAB", b, a, 40)
	if got := listed(b); !slices.Equal(got, []string{"cSelf", "cAB"}) {
		t.Fatalf("bob's list after opening cAB = %v, want [cSelf cAB]", got)
	}
	// A message lists it for both.
	save(t, s, msg("cMA", 1, c, a, 100))
	if got := listed(a); !slices.Equal(got, []string{"cMA", "cAB"}) {
		t.Fatalf("alice's list after mallory's message = %v, want [cMA cAB]", got)
	}
	if one := summary(t, s, "cMA", a); one.LastSeq != 1 || one.PeerID != c || one.Title != "mallory" {
		t.Fatalf("alice's view of cMA = %+v", one)
	}
}
