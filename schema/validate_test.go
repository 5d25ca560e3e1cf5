package schema

import (
	"errors"
	"net/http"
	"strings"
	"testing"
)

func ptr[T any](v T) *T { return &v }

// validSend is a request that satisfies every limit; cases change one field.
func validSend() SendRequest {
	return SendRequest{
		ClientMessageID: "c1",
		RecipientID:     "u2",
		MessageType:     MessageTypeUser,
		Content:         "hello",
		Timestamp:       ptr(int64(1700000000000)),
	}
}

// wantErr checks that err is a *Error with status and code ("" code: no error).
func wantErr(t *testing.T, err error, status int, code string) {
	t.Helper()
	if code == "" {
		if err != nil {
			t.Fatalf("want no error, got %v", err)
		}
		return
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("want *schema.Error %d %s, got %T %v", status, code, err, err)
	}
	if e.Status != status || e.Code != code {
		t.Fatalf("want %d %s, got %d %s (%s)", status, code, e.Status, e.Code, e.Message)
	}
}

func TestValidateSend(t *testing.T) {
	const caller = "u1"
	cases := []struct {
		name   string
		edit   func(r *SendRequest)
		status int
		code   string
	}{
		{"valid", func(r *SendRequest) {}, 0, ""},
		{"group", func(r *SendRequest) { r.MessageType = MessageTypeGroup }, 0, ""},
		{"content 1 byte", func(r *SendRequest) { r.Content = "x" }, 0, ""},
		{"content 65536 bytes", func(r *SendRequest) { r.Content = strings.Repeat("a", 65536) }, 0, ""},
		{"content 65536 bytes multibyte", func(r *SendRequest) { r.Content = strings.Repeat("\u20ac", 16384) + strings.Repeat("é", 8192) }, 0, ""}, // 49152 + 16384 bytes
		{"content 65537 bytes", func(r *SendRequest) { r.Content = strings.Repeat("a", 65537) }, http.StatusBadRequest, CodeContentTooLong},
		{"content 65537 bytes ending mid-rune", func(r *SendRequest) { r.Content = strings.Repeat("a", 65535) + "é" }, http.StatusBadRequest, CodeContentTooLong},
		{"content empty", func(r *SendRequest) { r.Content = "" }, http.StatusBadRequest, CodeBadRequest},
		{"content invalid utf8", func(r *SendRequest) { r.Content = "ok\xff" }, http.StatusBadRequest, CodeInvalidUTF8},
		{"content truncated rune", func(r *SendRequest) { r.Content = "\xe2\x82" }, http.StatusBadRequest, CodeInvalidUTF8},
		{"content surrogate half", func(r *SendRequest) { r.Content = "\xed\xa0\x80" }, http.StatusBadRequest, CodeInvalidUTF8},
		{"content overlong NUL", func(r *SendRequest) { r.Content = "\xc0\x80" }, http.StatusBadRequest, CodeInvalidUTF8},
		{"content NUL byte is valid UTF-8", func(r *SendRequest) { r.Content = "\x00" }, 0, ""},
		{"client_message_id 128 bytes", func(r *SendRequest) { r.ClientMessageID = strings.Repeat("c", 128) }, 0, ""},
		{"client_message_id 129 bytes", func(r *SendRequest) { r.ClientMessageID = strings.Repeat("c", 129) }, http.StatusBadRequest, CodeBadRequest},
		{"client_message_id empty", func(r *SendRequest) { r.ClientMessageID = "" }, http.StatusBadRequest, CodeBadRequest},
		{"recipient empty", func(r *SendRequest) { r.RecipientID = "" }, http.StatusBadRequest, CodeBadRequest},
		{"recipient 128 bytes", func(r *SendRequest) { r.RecipientID = strings.Repeat("r", 128) }, 0, ""},
		{"recipient 129 bytes", func(r *SendRequest) { r.RecipientID = strings.Repeat("r", 129) }, http.StatusBadRequest, CodeBadRequest},
		{"message_type empty", func(r *SendRequest) { r.MessageType = "" }, http.StatusBadRequest, CodeBadRequest},
		{"message_type other", func(r *SendRequest) { r.MessageType = "User" }, http.StatusBadRequest, CodeBadRequest},
		{"timestamp missing", func(r *SendRequest) { r.Timestamp = nil }, http.StatusBadRequest, CodeBadRequest},
		{"timestamp zero is present", func(r *SendRequest) { r.Timestamp = ptr(int64(0)) }, 0, ""},
		{"sender_id is caller", func(r *SendRequest) { r.SenderID = caller }, 0, ""},
		{"sender_id foreign", func(r *SendRequest) { r.SenderID = "u2" }, http.StatusForbidden, CodeForbidden},
		{"sender_id prefix of caller", func(r *SendRequest) { r.SenderID = "u" }, http.StatusForbidden, CodeForbidden},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := validSend()
			tc.edit(&r)
			wantErr(t, ValidateSend(&r, caller), tc.status, tc.code)
		})
	}
}

func TestValidateSendMultibyteBoundary(t *testing.T) {
	// 65,536 bytes made of 4-byte runes is accepted (the limit is bytes).
	r := validSend()
	r.Content = strings.Repeat("\U0001F600", 65536/4)
	if len(r.Content) != 65536 {
		t.Fatalf("setup: %d bytes", len(r.Content))
	}
	wantErr(t, ValidateSend(&r, "u1"), 0, "")
	r.Content += "a"
	wantErr(t, ValidateSend(&r, "u1"), http.StatusBadRequest, CodeContentTooLong)
}

func TestValidateCredentials(t *testing.T) {
	good := "password"
	cases := []struct {
		user, pass string
		ok         bool
	}{
		{"abc", good, true},
		{"ab", good, false},
		{"", good, false},
		{strings.Repeat("a", 32), good, true},
		{strings.Repeat("a", 33), good, false},
		{"a.b_c9", good, true},
		{"..._", good, true},
		{"Abc", good, false},
		{"ab-c", good, false},
		{"ab c", good, false},
		{"abc\n", good, false},
		{"\nabc", good, false},
		{"abç", good, false},
		{"abc", "1234567", false},
		{"abc", "12345678", true},
		{"abc", "", false},
		{"abc", "ééééééé", false}, // 7 characters, 14 bytes
		{"abc", "éééééééé", true}, // 8 characters
		{"abc", strings.Repeat("p", 1024), true},
		{"abc", strings.Repeat("p", 1025), false},
	}
	for _, tc := range cases {
		err := ValidateCredentials(tc.user, tc.pass)
		if tc.ok {
			wantErr(t, err, 0, "")
		} else if err == nil {
			t.Errorf("ValidateCredentials(%q, %q bytes=%d) accepted, want 400", tc.user, tc.pass, len(tc.pass))
		} else {
			wantErr(t, err, http.StatusBadRequest, CodeBadRequest)
		}
	}
}

func TestValidateStatus(t *testing.T) {
	for _, s := range []string{StatusDelivered, StatusRead} {
		wantErr(t, ValidateStatus(s), 0, "")
	}
	for _, s := range []string{"", StatusSent, "READ", "seen"} {
		wantErr(t, ValidateStatus(s), http.StatusBadRequest, CodeBadRequest)
	}
}

func TestValidID(t *testing.T) {
	for _, s := range []string{"a", "01HZY", strings.Repeat("x", 128), "a-b.c_~"} {
		if !ValidID(s) {
			t.Errorf("ValidID(%q) = false", s)
		}
	}
	for _, s := range []string{"", " ", "a b", "a\x00", "a\x7f", "é", strings.Repeat("x", 129), "a\tb"} {
		if ValidID(s) {
			t.Errorf("ValidID(%q) = true", s)
		}
	}
}

func TestDecodeFrame(t *testing.T) {
	long := strings.Repeat("r", 128)
	cases := []struct {
		name    string
		raw     string
		code    string // "" = accepted
		wantRef string
	}{
		{"ping", `{"type":"ping"}`, "", ""},
		{"ping with ref", `{"type":"ping","ref":"p1"}`, "", "p1"},
		{"send ref defaults to client_message_id", `{"type":"send","client_message_id":"c1"}`, "", "c1"},
		{"send explicit ref wins", `{"type":"send","client_message_id":"c1","ref":"r1"}`, "", "r1"},
		{"send empty ref defaults", `{"type":"send","client_message_id":"c1","ref":""}`, "", "c1"},
		{"ref 128 bytes", `{"type":"ping","ref":"` + long + `"}`, "", long},
		{"ref 129 bytes", `{"type":"ping","ref":"` + long + `r"}`, CodeBadRequest, ""},
		{"send 129-byte client_message_id gives no ref", `{"type":"send","client_message_id":"` + long + `c"}`, "", ""},
		{"send 128-byte client_message_id is the ref", `{"type":"send","client_message_id":"` + long + `"}`, "", long},
		{"receipt", `{"type":"receipt","message_id":"ab-1","status":"read"}`, "", ""},
		{"typing", `{"type":"typing","conversation_id":"ab","state":"composing"}`, "", ""},
		{"presence.subscribe", `{"type":"presence.subscribe","user_ids":["a","b"]}`, "", ""},
		{"presence.unsubscribe", `{"type":"presence.unsubscribe","user_ids":["a"]}`, "", ""},
		{"unknown type", `{"type":"bogus","ref":"x"}`, CodeBadRequest, "x"},
		{"no type", `{"ref":"x"}`, CodeBadRequest, "x"},
		{"null", `null`, CodeBadRequest, ""},
		{"empty", ``, CodeBadRequest, ""},
		{"array", `[]`, CodeBadRequest, ""},
		{"type not a string", `{"type":1}`, CodeBadRequest, ""},
		{"timestamp not an integer", `{"type":"send","timestamp":1.5}`, CodeBadRequest, ""},
		{"timestamp overflow", `{"type":"send","timestamp":99999999999999999999}`, CodeBadRequest, ""},
		{"invalid utf8", "{\"type\":\"send\",\"content\":\"\xff\"}", CodeInvalidUTF8, ""},
		{"trailing object", `{"type":"ping"} {}`, CodeBadRequest, ""},
		{"trailing garbage", `{"type":"ping"} x`, CodeBadRequest, ""},
		{"truncated", `{"type":"ping"`, CodeBadRequest, ""},
		{"a malformed field still echoes the ref", `{"type":"send","ref":"r9","timestamp":"soon"}`, CodeBadRequest, "r9"},
		{"a malformed field echoes the send's default ref", `{"type":"send","client_message_id":"c9","content":7}`, CodeBadRequest, "c9"},
		{"trailing whitespace is fine", "{\"type\":\"ping\"}\n\t ", "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, err := DecodeFrame([]byte(tc.raw))
			if tc.code == "" {
				wantErr(t, err, 0, "")
			} else {
				wantErr(t, err, http.StatusBadRequest, tc.code)
			}
			if f.Ref != tc.wantRef {
				t.Errorf("ref %q, want %q", f.Ref, tc.wantRef)
			}
		})
	}
}

func TestDecodeFrameFields(t *testing.T) {
	f, err := DecodeFrame([]byte(`{"type":"send","client_message_id":"c","recipient_id":"u2","message_type":"user","content":"hi","timestamp":17,"sender_id":"u1"}`))
	if err != nil {
		t.Fatal(err)
	}
	if f.ClientMessageID != "c" || f.RecipientID != "u2" || f.MessageType != "user" || f.Content != "hi" ||
		f.Timestamp == nil || *f.Timestamp != 17 || f.SenderID != "u1" {
		t.Fatalf("decoded %+v", f)
	}
	if err := ValidateSend(&f.SendRequest, "u1"); err != nil {
		t.Fatal(err)
	}
}

// TestDecodeJSONRefusesTrailingData: DecodeJSON promises to refuse trailing
// data, and the contract answers 400 to malformed JSON. dec.More() reports
// false when the next byte is '}' or ']', so those trailers slip through.
func TestDecodeJSONRefusesTrailingData(t *testing.T) {
	for _, raw := range []string{
		`{"type":"ping"} {}`,
		`{"type":"ping"} 1`,
		`{"type":"ping"},`,
		`{"type":"ping"}}`,
		`{"type":"ping"}]`,
		`{"type":"ping"}]]]}`,
	} {
		var v map[string]any
		if err := DecodeJSON([]byte(raw), &v); err == nil {
			t.Errorf("DecodeJSON(%q) accepted malformed JSON", raw)
		} else {
			wantErr(t, err, http.StatusBadRequest, CodeBadRequest)
		}
		if _, err := DecodeFrame([]byte(raw)); err == nil {
			t.Errorf("DecodeFrame(%q) accepted malformed JSON", raw)
		}
	}
}

func TestDecodeJSON(t *testing.T) {
	var v struct {
		N any `json:"n"`
	}
	if err := DecodeJSON([]byte(`{"n": 12345678901234567890}`), &v); err != nil {
		t.Fatal(err)
	}
	if _, ok := v.N.(interface{ String() string }); !ok {
		t.Errorf("numbers should decode as json.Number, got %T", v.N)
	}
	wantErr(t, DecodeJSON([]byte("{\"n\":\"\xc3\"}"), &v), http.StatusBadRequest, CodeInvalidUTF8)
	wantErr(t, DecodeJSON([]byte(`{"n":`), &v), http.StatusBadRequest, CodeBadRequest)
}

func TestErrorHelpers(t *testing.T) {
	e := Errorf(http.StatusNotFound, CodeNotFound, "no conversation %s", "x")
	if !errors.Is(e, ErrNotFound) || errors.Is(e, ErrForbidden) {
		t.Error("errors.Is should match by code")
	}
	wrapped := errors.Join(errors.New("ctx"), e)
	if AsError(wrapped) != e {
		t.Error("AsError should unwrap")
	}
	if AsError(errors.New("boom")) != ErrInternal {
		t.Error("AsError of an unknown error should be 500 internal")
	}
	rl := Errorf(http.StatusTooManyRequests, CodeRateLimited, "slow down")
	rl.RetryAfterMS = 1500
	fr := NewErrorFrame(rl, "r1")
	if fr.Type != TypeError || fr.Status != 429 || fr.Code != CodeRateLimited || fr.Ref != "r1" || fr.RetryAfterMS != 1500 {
		t.Errorf("frame %+v", fr)
	}
}

// Error messages say which field has which wrong type, in JSON's terms:
// never Go's type names.
func TestDecodeErrorsNameFieldsNotGoTypes(t *testing.T) {
	for raw, want := range map[string]string{
		`{"type":"send","timestamp":"soon"}`:           `field "timestamp" must be an integer, not string`,
		`{"type":"send","content":7}`:                  `field "content" must be a string, not number`,
		`{"type":"presence.subscribe","user_ids":"a"}`: `field "user_ids" must be an array, not string`,
		`[1]`:               `must be a JSON object, not array`,
		`{"type":"ping"`:    "malformed JSON",
		`{"type":"ping",,}`: "malformed JSON at byte",
	} {
		_, err := DecodeFrame([]byte(raw))
		e := AsError(err)
		if !strings.Contains(e.Message, want) {
			t.Errorf("DecodeFrame(%s): %q, want it to say %q", raw, e.Message, want)
		}
		for _, goName := range []string{"Go struct", "Go value", "schema.", "ClientFrame", "SendRequest", "int64"} {
			if strings.Contains(e.Message, goName) {
				t.Errorf("DecodeFrame(%s): %q shows a Go name (%s)", raw, e.Message, goName)
			}
		}
	}
}
