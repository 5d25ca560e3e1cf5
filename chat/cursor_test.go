package chat

import (
	"encoding/base64"
	"errors"
	"math"
	"net/http"
	"strconv"
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

func TestEventCursorRoundTrip(t *testing.T) {
	for _, n := range []uint64{0, 1, 42, 1 << 32, math.MaxUint64} {
		s := formatCursor(n)
		if s == "" {
			t.Fatalf("empty cursor for %d", n)
		}
		got, err := parseCursor(s)
		if err != nil || got != n {
			t.Fatalf("parseCursor(%q) = %d, %v; want %d", s, got, err, n)
		}
	}
}

func TestParseCursorRefuses(t *testing.T) {
	for _, s := range []string{"", " ", "-1", "+1", "1.0", "1e3", "0x10", "abc", "1 ", " 1",
		"18446744073709551616", "１"} {
		if n, err := parseCursor(s); err == nil {
			t.Errorf("parseCursor(%q) = %d, want an error", s, n)
		} else {
			wantBadCursor(t, err)
		}
	}
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
	for _, s := range []string{"0", "1", "42", "007", "18446744073709551615", "18446744073709551616", "-1", "+1", "", " 1", "1e3", "0x1", "١"} {
		f.Add(s, uint64(0))
	}
	f.Add("", uint64(math.MaxUint64))
	f.Add("x", uint64(1))
	f.Fuzz(func(t *testing.T, s string, n uint64) {
		got, err := parseCursor(s)
		if err != nil {
			wantBadCursor(t, err)
			if got != 0 {
				t.Fatalf("refused cursor returned %d", got)
			}
		} else {
			// Accepted: decimal digits only, and it means what it says.
			for _, c := range s {
				if c < '0' || c > '9' {
					t.Fatalf("accepted %q", s)
				}
			}
			if back, err := parseCursor(formatCursor(got)); err != nil || back != got {
				t.Fatalf("%q: %d does not round-trip", s, got)
			}
			if v, _ := strconv.ParseUint(s, 10, 64); v != got {
				t.Fatalf("%q parsed as %d", s, got)
			}
		}
		if back, err := parseCursor(formatCursor(n)); err != nil || back != n {
			t.Fatalf("parseCursor(formatCursor(%d)) = %d, %v", n, back, err)
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
