package schema

// Fuzz targets. Run one with, for example:
//
//	go test -run '^$' -fuzz '^FuzzDecodeFrame$' -fuzztime 20s ./schema
//
// Crashers found so far are kept under testdata/fuzz/<target> and run as
// regression cases by a plain `go test`.

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// contract400 are the codes the contract allows with status 400.
var contract400 = map[string]bool{CodeBadRequest: true, CodeContentTooLong: true, CodeInvalidUTF8: true}

// check400 fails unless err is a *Error with status 400 and a 400 contract code.
func check400(t *testing.T, err error) *Error {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %T %v is not a *schema.Error", err, err)
	}
	if e.Status != http.StatusBadRequest || !contract400[e.Code] {
		t.Fatalf("error %d %s, want 400 with a contract code", e.Status, e.Code)
	}
	return e
}

var frameSeeds = []string{
	`{"type":"send","client_message_id":"c1","recipient_id":"u2","message_type":"user","content":"hi","timestamp":1700000000000}`,
	`{"type":"send","client_message_id":"c1","ref":"r1","recipient_id":"g1","message_type":"group","content":"hi","timestamp":0,"sender_id":"u1"}`,
	`{"type":"send","client_message_id":"` + strings.Repeat("c", 128) + `"}`,
	`{"type":"send","client_message_id":"` + strings.Repeat("c", 129) + `"}`,
	`{"type":"send","client_message_id":"` + strings.Repeat("c", 129) + `","ref":"` + strings.Repeat("r", 128) + `"}`,
	`{"type":"ping","ref":"` + strings.Repeat("r", 128) + `"}`,
	`{"type":"ping","ref":"` + strings.Repeat("r", 129) + `"}`,
	`{"type":"ping","ref":"` + strings.Repeat("é", 64) + `"}`,
	`{"type":"ping","ref":"` + strings.Repeat("é", 65) + `"}`,
	`{"type":"ping","ref":"\u00e9\ud83d\ude00"}`,
	`{"type":"receipt","message_id":"d0123-1","status":"read","ref":"x"}`,
	`{"type":"typing","conversation_id":"d0","state":"composing"}`,
	`{"type":"presence.subscribe","user_ids":["a","b"]}`,
	`{"type":"presence.unsubscribe","user_ids":[]}`,
	`{"type":"ping"}`,
	`{"TYPE":"PING","Ref":"x"}`,
	`{"type":"send","type":"ping"}`,
	`{"type":"send","ref":"a","ref":""}`,
	`{"type":"bogus"}`,
	`{"type":""}`,
	`{"type":null}`,
	`{"type":1}`,
	`{"type":"send","timestamp":1e3}`,
	`{"type":"send","timestamp":"1"}`,
	`{"type":"send","timestamp":-9223372036854775808}`,
	`{"type":"send","timestamp":9223372036854775808}`,
	`{"type":"send","user_ids":{}}`,
	`{"type":"ping"}}`,
	`{"type":"ping"}]`,
	`{"type":"ping"} {}`,
	`{"type":"ping"`,
	"{\"type\":\"send\",\"content\":\"\xff\"}",
	"{\"type\":\"send\",\"content\":\"\\ud800\"}",
	"\xef\xbb\xbf{\"type\":\"ping\"}",
	`null`, `[]`, `""`, `0`, ``, ` `, `{}`, `{"a":[[[[[[[[[[]]]]]]]]]]}`,
}

func FuzzDecodeFrame(f *testing.F) {
	for _, s := range frameSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		fr, err := DecodeFrame(raw)
		if len(fr.Ref) > MaxRefBytes {
			t.Fatalf("ref of %d bytes returned (err %v)", len(fr.Ref), err)
		}
		if err != nil {
			check400(t, err)
			return
		}
		if !utf8.Valid(raw) {
			t.Fatalf("accepted a frame that is not valid UTF-8")
		}
		switch fr.Type {
		case TypeSend, TypeReceipt, TypeTyping, TypePresenceSubscribe, TypePresenceUnsubscrib, TypePing:
		default:
			t.Fatalf("accepted frame type %q", fr.Type)
		}
		if fr.Type != TypeSend {
			return
		}
		// The ref a client sent wins; without one, it is the
		// client_message_id when that fits in a ref.
		var probe struct {
			Ref string `json:"ref"`
		}
		if err := json.NewDecoder(bytes.NewReader(raw)).Decode(&probe); err != nil {
			t.Fatalf("DecodeFrame accepted what encoding/json refuses: %v", err)
		}
		switch {
		case probe.Ref != "":
			if fr.Ref != probe.Ref {
				t.Fatalf("ref %q, client sent %q", fr.Ref, probe.Ref)
			}
		case len(fr.ClientMessageID) <= MaxRefBytes:
			if fr.Ref != fr.ClientMessageID {
				t.Fatalf("ref %q, want the client_message_id %q", fr.Ref, fr.ClientMessageID)
			}
		default:
			if fr.Ref != "" {
				t.Fatalf("ref %q for an over-long client_message_id", fr.Ref)
			}
		}
	})
}

func FuzzDecodeJSON(f *testing.F) {
	for _, s := range frameSeeds {
		f.Add([]byte(s))
	}
	for _, s := range []string{`{"n":1}`, `{"n":1.5e300}`, `{"n":12345678901234567890}`, `{"a":{"b":[1,"x",null,true]}}`, `{"type":"ping"}]]]}`, `{} 1`, `{},`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var m map[string]any
		err := DecodeJSON(raw, &m)
		if err != nil {
			e := check400(t, err)
			if e.Code == CodeContentTooLong {
				t.Fatalf("DecodeJSON returned content_too_long")
			}
			if e.Code == CodeInvalidUTF8 && utf8.Valid(raw) {
				t.Fatalf("invalid_utf8 for valid UTF-8")
			}
			return
		}
		if !utf8.Valid(raw) {
			t.Fatalf("accepted invalid UTF-8")
		}
		if !json.Valid(raw) {
			t.Fatalf("accepted malformed JSON %q", raw)
		}
		// The same bytes decode the same way into a typed frame.
		var fr ClientFrame
		errFrame := DecodeJSON(raw, &fr)
		if errFrame != nil {
			check400(t, errFrame)
		}
	})
}

func FuzzValidateSend(f *testing.F) {
	big := strings.Repeat("a", MaxContentBytes)
	f.Add("c1", "u2", "user", "hello", true, int64(1700000000000), "", "u1")
	f.Add("c1", "g1", "group", "hello", true, int64(0), "u1", "u1")
	f.Add("c1", "u2", "user", "hello", true, int64(-1), "u2", "u1")
	f.Add("c1", "u2", "user", "hello", false, int64(0), "", "u1")
	f.Add("", "u2", "user", "hello", true, int64(1), "", "u1")
	f.Add(strings.Repeat("c", 128), "u2", "user", "x", true, int64(1), "", "u1")
	f.Add(strings.Repeat("c", 129), "u2", "user", "x", true, int64(1), "", "u1")
	f.Add("c1", strings.Repeat("r", 129), "user", "x", true, int64(1), "", "u1")
	f.Add("c1", "u2", "User", "x", true, int64(1), "", "u1")
	f.Add("c1", "u2", "user", "", true, int64(1), "", "u1")
	f.Add("c1", "u2", "user", "\xff\xfe", true, int64(1), "", "u1")
	f.Add("c1", "u2", "user", "\xed\xa0\x80", true, int64(1), "", "u1")
	f.Add("c1", "u2", "user", big, true, int64(1), "", "u1")
	f.Add("c1", "u2", "user", big+"a", true, int64(1), "", "u1")
	f.Add("c1", "u2", "user", big[:MaxContentBytes-1]+"é", true, int64(1), "", "u1")
	f.Add("c1", "u2", "user", "hi", true, int64(1), "u1", "")
	f.Fuzz(func(t *testing.T, cmid, recipient, mtype, content string, hasTS bool, ts int64, sender, caller string) {
		r := SendRequest{ClientMessageID: cmid, RecipientID: recipient, MessageType: mtype, Content: content, SenderID: sender}
		if hasTS {
			r.Timestamp = &ts
		}
		before := r
		err := ValidateSend(&r, caller)
		if r != before {
			t.Fatalf("ValidateSend modified the request")
		}
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %T is not a *schema.Error", err)
			}
			switch {
			case e.Status == http.StatusBadRequest && contract400[e.Code]:
			case e.Status == http.StatusForbidden && e.Code == CodeForbidden:
				if sender == "" || sender == caller {
					t.Fatalf("403 for sender_id %q and caller %q", sender, caller)
				}
			default:
				t.Fatalf("error %d %s", e.Status, e.Code)
			}
			if e.Code == CodeContentTooLong && len(content) <= MaxContentBytes {
				t.Fatalf("content_too_long for %d bytes", len(content))
			}
			if e.Code == CodeInvalidUTF8 && utf8.ValidString(content) {
				t.Fatalf("invalid_utf8 for valid content")
			}
			return
		}
		switch {
		case len(content) < 1 || len(content) > MaxContentBytes:
			t.Fatalf("accepted content of %d bytes", len(content))
		case !utf8.ValidString(content):
			t.Fatalf("accepted invalid UTF-8 content")
		case len(cmid) < 1 || len(cmid) > MaxClientMessageIDBytes:
			t.Fatalf("accepted client_message_id of %d bytes", len(cmid))
		case len(recipient) < 1 || len(recipient) > MaxIDBytes:
			t.Fatalf("accepted recipient_id of %d bytes", len(recipient))
		case mtype != MessageTypeUser && mtype != MessageTypeGroup:
			t.Fatalf("accepted message_type %q", mtype)
		case !hasTS:
			t.Fatalf("accepted a send without timestamp")
		case sender != "" && sender != caller:
			t.Fatalf("accepted sender_id %q for caller %q", sender, caller)
		}
	})
}

func FuzzParseMessageID(f *testing.F) {
	f.Add("d0123456789abcdef0123456789abcdef-1", "d0123456789abcdef0123456789abcdef", int64(1))
	f.Add("g01HZY0000000000000000000AB-42", "g01HZY0000000000000000000AB", int64(42))
	f.Add("ab-9223372036854775807", "ab", int64(9223372036854775807))
	f.Add("ab-9223372036854775808", "ab", int64(-9223372036854775808))
	f.Add("ab-0", "ab", int64(0))
	f.Add("ab-01", "a", int64(1))
	f.Add("ab-+1", "a.b", int64(1))
	f.Add("ab--1", "a*b", int64(-1))
	f.Add("a.b-1", "a>b", int64(1))
	f.Add("a b-1", "a b", int64(1))
	f.Add("natter.conv.msg.>-1", "natter.conv.msg.>", int64(1))
	f.Add("ab-c-1", "ab-c", int64(1))
	f.Add("\u00e9\u00e9-1", "\u00e9\u00e9", int64(1))
	f.Add("-", "", int64(1))
	f.Add("", strings.Repeat("z", 64), int64(3))
	f.Add(strings.Repeat("z", 65)+"-1", strings.Repeat("z", 65), int64(1))
	f.Fuzz(func(t *testing.T, id, conv string, seq int64) {
		c, s, ok := ParseMessageID(id)
		if ok {
			if s < 1 {
				t.Fatalf("accepted seq %d", s)
			}
			if len(c) < 2 || len(c) > 64 {
				t.Fatalf("accepted conversation id of %d bytes", len(c))
			}
			for i := 0; i < len(c); i++ {
				ch := c[i]
				if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '_') {
					t.Fatalf("accepted conversation id %q with byte %q", c, ch)
				}
			}
			if strings.ContainsAny(c, ".*> \t\r\n\x00") {
				t.Fatalf("conversation id %q is unsafe in a subject", c)
			}
			if MessageID(c, s) != id {
				t.Fatalf("MessageID(%q, %d) = %q, not %q", c, s, MessageID(c, s), id)
			}
		} else if c != "" || s != 0 {
			t.Fatalf("refused id returned %q, %d", c, s)
		}
		// Everything natter makes parses back.
		if ValidConversationID(conv) && seq >= 1 {
			id2 := MessageID(conv, seq)
			c2, s2, ok2 := ParseMessageID(id2)
			if !ok2 || c2 != conv || s2 != seq {
				t.Fatalf("ParseMessageID(%q) = %q, %d, %v; want %q, %d", id2, c2, s2, ok2, conv, seq)
			}
			if _, err := strconv.ParseInt(id2[len(conv)+1:], 10, 64); err != nil {
				t.Fatal(err)
			}
		}
	})
}
