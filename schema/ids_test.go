package schema

import (
	"strings"
	"testing"
)

func TestDirectConversationID(t *testing.T) {
	ab, ba := DirectConversationID("alice", "bob"), DirectConversationID("bob", "alice")
	if ab != ba {
		t.Fatalf("not symmetric: %s vs %s", ab, ba)
	}
	seen := map[string][2]string{}
	pairs := [][2]string{
		{"alice", "bob"}, {"alice", "carol"}, {"bob", "carol"},
		{"alice", "alice"}, {"bob", "bob"},
		{"a", "bc"}, {"ab", "c"}, // concatenation must not collide
		{"", "ab"}, {"a", "b"},
		{"01HZY0000000000000000000A", "01HZY0000000000000000000B"},
	}
	for _, p := range pairs {
		id := DirectConversationID(p[0], p[1])
		if prev, dup := seen[id]; dup {
			t.Errorf("%v and %v share %s", prev, p, id)
		}
		seen[id] = p
		if !ValidConversationID(id) {
			t.Errorf("%v: %q is not a valid conversation id", p, id)
		}
		if len(id) != 33 || id[0] != 'd' {
			t.Errorf("%v: %q, want d + 32 hex", p, id)
		}
		if got := DirectConversationID(p[1], p[0]); got != id {
			t.Errorf("%v: not symmetric", p)
		}
	}
}

func TestMessageIDRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		conv string
		seq  int64
	}{
		{"d0123456789abcdef0123456789abcdef", 1},
		{"g01HZY0000000000000000000AB", 42},
		{"ab", 9223372036854775807},
		{strings.Repeat("z", 64), 7},
		{"A_b", 1000},
	} {
		id := MessageID(tc.conv, tc.seq)
		conv, seq, ok := ParseMessageID(id)
		if !ok || conv != tc.conv || seq != tc.seq {
			t.Errorf("ParseMessageID(%q) = %q, %d, %v", id, conv, seq, ok)
		}
	}
}

func TestParseMessageIDRefuses(t *testing.T) {
	for _, id := range []string{
		"", "-", "-1", "a-1", // conversation too short
		"ab", "ab-", "ab-0", "ab--1", "ab-+1", "ab-01", "ab- 1", "ab-1 ", "ab-1.0",
		"ab-9223372036854775808", // overflows int64
		"a.b-1", "a*b-1", "a>b-1", "a b-1", "a\tb-1", "a\nb-1", "é_-1", "ab\x00-1",
		"natter.conv.msg.x-1", "ab-c-1", strings.Repeat("z", 65) + "-1",
	} {
		if conv, seq, ok := ParseMessageID(id); ok {
			t.Errorf("ParseMessageID(%q) accepted: %q %d", id, conv, seq)
		}
	}
}

func TestValidConversationAndUserID(t *testing.T) {
	for _, s := range []string{"", "a", strings.Repeat("a", 65), "a.b", "a*", ">a", "a b", "a-b", "ü1"} {
		if ValidConversationID(s) {
			t.Errorf("ValidConversationID(%q) = true", s)
		}
	}
	for _, s := range []string{"ab", strings.Repeat("a", 64), "A_9"} {
		if !ValidConversationID(s) {
			t.Errorf("ValidConversationID(%q) = false", s)
		}
	}
	for _, s := range []string{"", strings.Repeat("a", 65), "a.b", "a*", "a>", "a b", "a-b"} {
		if ValidUserID(s) {
			t.Errorf("ValidUserID(%q) = true", s)
		}
	}
	for _, s := range []string{"a", NewID(), strings.Repeat("a", 64)} {
		if !ValidUserID(s) {
			t.Errorf("ValidUserID(%q) = false", s)
		}
	}
}

func TestNewIDUnique(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := NewID()
		if seen[id] || len(id) != 26 || !ValidUserID(id) {
			t.Fatalf("bad or duplicate id %q", id)
		}
		seen[id] = true
	}
}
