package chat

import (
	"encoding/base64"
	"errors"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/natter-chat/natter/schema"
	"github.com/natter-chat/natter/store"
)

func wantBadCursor(t *testing.T, err error) {
	t.Helper()
	var e *schema.Error
	if !errors.As(err, &e) || e.Status != http.StatusBadRequest || e.Code != schema.CodeBadRequest {
		t.Fatalf("want a 400 bad_request *schema.Error, got %T %v", err, err)
	}
}

func testCodec(legacyMax uint64) *cursorCodec {
	return newCursorCodec([]byte("0123456789abcdef0123456789abcdef"), legacyMax)
}

func TestEventCursorRoundTrip(t *testing.T) {
	c := testCodec(0)
	for _, n := range []uint64{0, 1, 42, 1 << 32, math.MaxUint64} {
		s := c.format("u1", n)
		if s == "" || !strings.HasPrefix(s, "e") || len(s) != 23 {
			t.Fatalf("cursor %q for %d: want e + 22 base64url characters", s, n)
		}
		got, err := c.parse("u1", s)
		if err != nil || got != n {
			t.Fatalf("parse(%q) = %d, %v; want %d", s, got, err, n)
		}
	}
}

// Two cursors of one user around 100 events of other users: nothing in
// them tells how far apart they are (a block cipher's output for 1 and
// 101 shares no more with each other than with any other value), and
// cursors of the same position differ between users.
func TestEventCursorsRevealNoDistance(t *testing.T) {
	c := testCodec(0)
	before, after := c.format("alice", 1000), c.format("alice", 1101)
	next := c.format("alice", 1001)
	if before == after || before == next {
		t.Fatal("distinct positions, equal cursors")
	}
	// No prefix shared beyond chance, whatever the distance: a clear or
	// order-preserving encoding would share most of its characters.
	shared := func(a, b string) int {
		n := 0
		for i := 1; i < len(a) && i < len(b); i++ {
			if a[i] == b[i] {
				n++
			}
		}
		return n
	}
	if shared(before, next) > 6 || shared(before, after) > 6 {
		t.Errorf("cursors %s, %s, %s share too many characters", before, next, after)
	}
	if strings.Contains(before, "1000") || strings.Contains(after, "1101") {
		t.Errorf("cursor shows its position: %s %s", before, after)
	}
	if c.format("bob", 1000) == before {
		t.Error("two users' cursors of one position are equal")
	}
	if c.format("alice", 1000) != before {
		t.Error("one position formats to two cursors")
	}
}

// A cursor of another user, one with a changed character, or one made
// up is 400 bad_request; a decimal cursor of before resumes, up to the
// stream's position at start.
func TestParseEventCursorRefuses(t *testing.T) {
	c := testCodec(5000)
	good := c.format("alice", 77)
	tampered := []byte(good)
	for i := 1; i < len(tampered); i++ {
		tt := slices.Clone(tampered)
		tt[i] = "AB"[bool2int(tt[i] == 'A')]
		if n, err := c.parse("alice", string(tt)); err == nil {
			t.Errorf("tampered cursor %q (char %d) accepted as %d", tt, i, n)
		} else {
			wantBadCursor(t, err)
		}
	}
	other := testCodec(5000)
	other.tagKey = []byte("another server's key..........!!")
	for _, s := range []string{c.format("bob", 77), other.format("alice", 77), "", "e", "e" + good[1:22], good + "A",
		"e" + base64.RawURLEncoding.EncodeToString(make([]byte, 16)), " ", "-1", "+1", "1.0", "1e3", "0x10", "abc", "1 ", " 1",
		"18446744073709551616", "１", "5001", "99999999"} {
		if n, err := c.parse("alice", s); err == nil {
			t.Errorf("parse(%q) = %d, want an error", s, n)
		} else {
			wantBadCursor(t, err)
		}
	}
	for _, s := range []string{"0", "1", "42", "5000", "007"} {
		want, _ := strconv.ParseUint(s, 10, 64)
		if n, err := c.parse("alice", s); err != nil || n != want {
			t.Errorf("legacy cursor %q: %d, %v; want %d", s, n, err, want)
		}
	}
}

func bool2int(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestConversationCursorRoundTrip(t *testing.T) {
	for _, p := range []store.ConversationPage{
		{ActivityAt: 1700000000000, ID: "d0123456789abcdef0123456789abcdef"},
		{ActivityAt: 0, ID: "g1"},
		{ActivityAt: -5, ID: "x"},
		{ActivityAt: math.MaxInt64, ID: "a|b|c"}, // the separator may occur in the id
		{ActivityAt: math.MinInt64, ID: "é\x00\xff"},
	} {
		s := encodeConversationCursor(p)
		if s == "" {
			t.Fatalf("empty cursor for %+v", p)
		}
		got, err := decodeConversationCursor(s)
		if err != nil || got != p {
			t.Fatalf("decode(encode(%+v)) = %+v, %v", p, got, err)
		}
	}
}

func TestDecodeConversationCursorRefuses(t *testing.T) {
	enc := base64.RawURLEncoding.EncodeToString
	for _, s := range []string{
		"", "!!!", "a", enc([]byte("17")), enc([]byte("17|")), enc([]byte("|x")), enc([]byte("x|y")),
		enc([]byte("1.5|x")), enc([]byte("9223372036854775808|x")),
		base64.StdEncoding.EncodeToString([]byte("17|ab")), // padded: "MTd8YWI="
		enc([]byte("17|x")) + "=",
	} {
		if p, err := decodeConversationCursor(s); err == nil {
			t.Errorf("decodeConversationCursor(%q) = %+v, want an error", s, p)
		} else {
			wantBadCursor(t, err)
		}
	}
}

func FuzzParseCursor(f *testing.F) {
	c := testCodec(1 << 20)
	for _, s := range []string{"0", "1", "42", "007", "1048576", "1048577", "18446744073709551616", "-1", "+1", "", " 1", "1e3", "0x1", "١",
		c.format("alice", 9), c.format("bob", 9), "eAAAAAAAAAAAAAAAAAAAAAA"} {
		f.Add(s, uint64(0))
	}
	f.Add("", uint64(math.MaxUint64))
	f.Add("x", uint64(1))
	f.Fuzz(func(t *testing.T, s string, n uint64) {
		got, err := c.parse("alice", s)
		if err != nil {
			wantBadCursor(t, err)
			if got != 0 {
				t.Fatalf("refused cursor returned %d", got)
			}
		} else if !strings.HasPrefix(s, "e") {
			// A legacy cursor: decimal digits only, within the limit,
			// and it means what it says.
			v, perr := strconv.ParseUint(s, 10, 64)
			if strings.Trim(s, "0123456789") != "" || perr != nil || v != got || got > 1<<20 {
				t.Fatalf("accepted %q as %d", s, got)
			}
		} else if c.format("alice", got) != s {
			t.Fatalf("accepted %q as %d, which formats to %q", s, got, c.format("alice", got))
		}
		if back, err := c.parse("alice", c.format("alice", n)); err != nil || back != n {
			t.Fatalf("parse(format(%d)) = %d, %v", n, back, err)
		}
		if _, err := c.parse("bob", c.format("alice", n)); err == nil {
			t.Fatalf("alice's cursor for %d accepted for bob", n)
		}
	})
}

func FuzzDecodeConversationCursor(f *testing.F) {
	enc := base64.RawURLEncoding.EncodeToString
	f.Add(encodeConversationCursor(store.ConversationPage{ActivityAt: 1700000000000, ID: "d0123456789abcdef0123456789abcdef"}), int64(1700000000000), "d0123456789abcdef0123456789abcdef")
	f.Add(enc([]byte("17|a|b")), int64(-1), "a|b")
	f.Add(enc([]byte("17|")), int64(0), "")
	f.Add(enc([]byte("|x")), int64(math.MinInt64), "x")
	f.Add(enc([]byte("9223372036854775808|x")), int64(math.MaxInt64), "\xff")
	f.Add(enc([]byte("-0|x")), int64(0), "é")
	f.Add(enc([]byte("+1|x")), int64(1), "\x00")
	f.Add(enc([]byte("17|x"))+"=", int64(17), "x")
	f.Add("MTd8eA==", int64(17), "x")
	f.Add("MTd8eB", int64(17), "x") // non-canonical trailing bits
	f.Add("", int64(0), "")
	f.Add("!!!!", int64(0), "|")
	f.Fuzz(func(t *testing.T, s string, at int64, id string) {
		p, err := decodeConversationCursor(s)
		if err != nil {
			wantBadCursor(t, err)
			if p != (store.ConversationPage{}) {
				t.Fatalf("refused cursor returned %+v", p)
			}
		} else {
			if p.ID == "" {
				t.Fatalf("accepted %q with an empty id", s)
			}
			back, err := decodeConversationCursor(encodeConversationCursor(p))
			if err != nil || back != p {
				t.Fatalf("%q: %+v does not round-trip: %+v, %v", s, p, back, err)
			}
		}
		if id == "" {
			return
		}
		want := store.ConversationPage{ActivityAt: at, ID: id}
		c := encodeConversationCursor(want)
		got, err := decodeConversationCursor(c)
		if err != nil || got != want {
			t.Fatalf("decode(encode(%+v)) = %+v, %v", want, got, err)
		}
		for i := 0; i < len(c); i++ {
			if ch := c[i]; !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '-' || ch == '_') {
				t.Fatalf("cursor %q is not URL-safe", c)
			}
		}
	})
}

// Cursors clients already hold must keep resuming: what a key, a user and
// a position give is fixed (this value was issued by natter before
// userCursors), and the per-user formatter gives the same.
func TestEventCursorIsStable(t *testing.T) {
	c := testCodec(0)
	const want = "e34mxHJVK1ON1F7rewWezRA"
	if got := c.format("u1", 12345); got != want {
		t.Fatalf("format(u1, 12345) = %q, want %q: cursors issued before would no longer resume", got, want)
	}
	if got := c.forUser("u1").format(12345); got != want {
		t.Fatalf("forUser(u1).format(12345) = %q, want %q", got, want)
	}
	if n, err := c.parse("u1", want); err != nil || n != 12345 {
		t.Fatalf("parse(%q) = %d, %v; want 12345", want, n, err)
	}
}
