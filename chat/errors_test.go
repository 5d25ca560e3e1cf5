package chat

import (
	"errors"
	"fmt"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/natter-chat/natter/schema"
	"github.com/natter-chat/natter/store"
	"github.com/natter-chat/natter/streams"
)

// Store and JetStream errors are translated once, into codes: a retry
// hint and Retry-After for what may pass, the cause kept for the log but
// out of the client's message.
func TestTranslateGivesCodesAndHidesCauses(t *testing.T) {
	cause := errors.New("secret-cause")
	for _, tc := range []struct {
		err   error
		code  string
		after bool
	}{
		{fmt.Errorf("x: %w: %w", store.ErrUnavailable, cause), schema.CodeUnavailable, true},
		{fmt.Errorf("x: %w: %w", streams.ErrStreamFull, cause), schema.CodeUnavailable, true},
		{fmt.Errorf("x: %w: %w", streams.ErrStorage, cause), schema.CodeUnavailable, true},
		{fmt.Errorf("x: %w: %w", streams.ErrTimeout, cause), schema.CodeUnavailable, true},
		{fmt.Errorf("x: %w: %w", streams.ErrUnavailable, cause), schema.CodeUnavailable, true},
		{fmt.Errorf("x: %w: %w", store.ErrNotFound, cause), schema.CodeNotFound, false},
	} {
		err := Translate(tc.err, "thing", RetryRequest)
		var e *schema.Error
		if !errors.As(err, &e) || e.Code != tc.code {
			t.Fatalf("Translate(%v) = %v, want code %s", tc.err, err, tc.code)
		}
		if (e.RetryAfterMS > 0) != tc.after {
			t.Errorf("Translate(%v): RetryAfterMS %d", tc.err, e.RetryAfterMS)
		}
		if strings.Contains(e.Message, "secret-cause") {
			t.Errorf("Translate(%v): the cause is in the client's message %q", tc.err, e.Message)
		}
		if tc.after && (!strings.Contains(e.Message, RetryRequest) || strings.Contains(e.Message, "client_message_id")) {
			t.Errorf("Translate(%v): message %q should name the request's retry only", tc.err, e.Message)
		}
		if tc.after && !errors.Is(err, cause) {
			t.Errorf("Translate(%v) lost the cause for the log", tc.err)
		}
	}
	if err := Translate(errors.New("bug"), "thing", RetryRequest); errors.As(err, new(*schema.Error)) {
		t.Errorf("an unknown error became a contract error: %v", err)
	}
	if got := Translate(fmt.Errorf("x: %w", streams.ErrStreamFull), "send", RetrySend); !strings.Contains(got.Error(), "client_message_id") {
		t.Errorf("a send is not told to retry with its client_message_id: %v", got)
	}
}

// chat is transport-neutral: no file of the package (tests aside)
// imports an HTTP or WebSocket library.
func TestChatImportsNoTransport(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil || len(files) == 0 {
		t.Fatalf("no files: %v", err)
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		af, err := parser.ParseFile(token.NewFileSet(), f, src, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range af.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if strings.HasPrefix(path, "net/http") || strings.Contains(path, "websocket") || strings.HasSuffix(path, "natter/gateway") {
				t.Errorf("%s imports %s", f, path)
			}
		}
	}
}
