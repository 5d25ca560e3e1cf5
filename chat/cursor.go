package chat

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"strconv"
	"strings"

	"github.com/natter-chat/natter/schema"
	"github.com/natter-chat/natter/store"
)

// Event cursors are opaque to clients and to everyone else. Inside, a
// cursor is a position in the INBOX stream, which every user shares: in
// clear (as natter's first cursors were, in decimal) it would let any user
// meter the whole server's traffic by comparing two of their cursors.
// So a cursor is one AES-256 block, "e" + base64url, that encrypts
//
//	stream sequence (8 bytes) | tag of the user (8 bytes)
//
// with a key derived from the token signing key (auth.Signer.DeriveKey),
// which every node already shares and keeps 0600 in the data directory.
// A block cipher is a pseudo-random permutation: two cursors say nothing
// of how far apart they are, only whether they are equal. The tag binds a
// cursor to its user (another user's cursor, a tampered or made-up one
// decrypts to a wrong tag: 400), with a 2^-64 chance of a forgery passing.
// Conversation-list cursors encode the last row's position (the caller's
// own conversations: nothing to hide from them).

// cursorCodec formats and parses event cursors.
type cursorCodec struct {
	block  cipher.Block
	tagKey []byte
	// legacyMax: decimal cursors (natter before opaque cursors) at or
	// below it are accepted, so stored ones still resume. It is the
	// stream's last sequence when this process started, which is at or
	// above every decimal cursor ever issued (none is issued since), and a
	// frozen value: probing with made-up decimal cursors finds where the
	// stream was at start, never its live traffic.
	legacyMax uint64
}

const cursorPrefix = "e"

func newCursorCodec(key []byte, legacyMax uint64) *cursorCodec {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("cursor block"))
	block, err := aes.NewCipher(m.Sum(nil))
	if err != nil {
		panic(err) // a 32-byte key always makes an AES-256 cipher
	}
	m = hmac.New(sha256.New, key)
	m.Write([]byte("cursor tag"))
	return &cursorCodec{block: block, tagKey: m.Sum(nil), legacyMax: legacyMax}
}

func (c *cursorCodec) tag(user string, dst []byte) {
	m := hmac.New(sha256.New, c.tagKey)
	m.Write([]byte(user))
	copy(dst, m.Sum(nil)[:8])
}

// format is user's cursor for stream sequence seq.
func (c *cursorCodec) format(user string, seq uint64) string {
	return c.forUser(user).format(seq)
}

// forUser returns user's cursor formatter. The tag depends on the user
// alone, and its HMAC costs more than the rest of a cursor: a session, or
// a replay, that formats one for every event it delivers computes it once.
func (c *cursorCodec) forUser(user string) userCursors {
	u := userCursors{c: c}
	c.tag(user, u.tag[:])
	return u
}

// userCursors formats one user's cursors.
type userCursors struct {
	c   *cursorCodec
	tag [aes.BlockSize - 8]byte
}

func (u userCursors) format(seq uint64) string {
	var b [aes.BlockSize]byte
	binary.BigEndian.PutUint64(b[:8], seq)
	copy(b[8:], u.tag[:])
	u.c.block.Encrypt(b[:], b[:])
	return cursorPrefix + base64.RawURLEncoding.EncodeToString(b[:])
}

// parse returns the stream sequence of one of user's cursors: an opaque
// one issued to user, or a decimal one of before (at most legacyMax).
// Anything else is 400 bad_request.
func (c *cursorCodec) parse(user, s string) (uint64, error) {
	bad := schema.BadRequest("cursor is not one natter gave out")
	if rest, ok := strings.CutPrefix(s, cursorPrefix); ok {
		// The decoder skips CR and LF even when strict: refused here, so
		// that one position has one cursor (found by FuzzParseCursor).
		raw, err := base64.RawURLEncoding.Strict().DecodeString(rest)
		if err != nil || len(raw) != aes.BlockSize || strings.ContainsAny(rest, "\r\n") {
			return 0, bad
		}
		var b, want [aes.BlockSize]byte
		c.block.Decrypt(b[:], raw)
		c.tag(user, want[8:])
		if subtle.ConstantTimeCompare(b[8:], want[8:]) != 1 {
			return 0, bad
		}
		return binary.BigEndian.Uint64(b[:8]), nil
	}
	n, err := parseLegacyCursor(s)
	if err != nil {
		return 0, err
	}
	if n > c.legacyMax {
		return 0, schema.BadRequest("cursor %s was never issued: connect without a cursor", s)
	}
	return n, nil
}

// parseLegacyCursor reads a decimal cursor: digits only.
func parseLegacyCursor(s string) (uint64, error) {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, schema.BadRequest("cursor is not one natter gave out")
		}
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, schema.BadRequest("cursor is not one natter gave out")
	}
	return n, nil
}

func encodeConversationCursor(p store.ConversationPage) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(p.ActivityAt, 10) + "|" + p.ID))
}

func decodeConversationCursor(s string) (store.ConversationPage, error) {
	bad := schema.BadRequest("cursor is not one natter gave out")
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || strings.ContainsAny(s, "\r\n") {
		return store.ConversationPage{}, bad
	}
	at, id, ok := strings.Cut(string(raw), "|")
	n, err := strconv.ParseInt(at, 10, 64)
	if !ok || err != nil || id == "" {
		return store.ConversationPage{}, bad
	}
	return store.ConversationPage{ActivityAt: n, ID: id}, nil
}
