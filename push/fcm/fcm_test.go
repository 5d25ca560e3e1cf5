package fcm

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/natter-chat/natter/push"
	"github.com/natter-chat/natter/store"
)

// fakeGoogle is an OAuth token endpoint (the service account's token_uri:
// a JWT-bearer grant for an access token) and FCM HTTP v1
// (POST /v1/projects/<project>/messages:send with that token).
type fakeGoogle struct {
	t      *testing.T
	mu     sync.Mutex
	tokens int
	got    []map[string]any
}

func (f *fakeGoogle) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	switch {
	case r.URL.Path == "/token":
		_ = r.ParseForm()
		if r.Form.Get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" || r.Form.Get("assertion") == "" {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"error":"invalid_grant"}`)
			return
		}
		f.mu.Lock()
		f.tokens++
		f.mu.Unlock()
		_, _ = io.WriteString(w, `{"access_token":"ya29.test","token_type":"Bearer","expires_in":3600}`)
	case r.URL.Path == "/v1/projects/natter-test/messages:send" && r.Method == http.MethodPost:
		if r.Header.Get("Authorization") != "Bearer ya29.test" {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"error":{"code":401,"status":"UNAUTHENTICATED","message":"no token"}}`)
			return
		}
		var body struct {
			Message map[string]any `json:"message"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		if body.Message["token"] == "gone" {
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, `{"error":{"code":404,"message":"Requested entity was not found.","status":"NOT_FOUND",
				"details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"UNREGISTERED"}]}}`)
			return
		}
		if body.Message["token"] == "invalid" {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"error":{"code":400,"message":"bad","status":"INVALID_ARGUMENT",
				"details":[{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"INVALID_ARGUMENT"}]}}`)
			return
		}
		f.mu.Lock()
		f.got = append(f.got, body.Message)
		f.mu.Unlock()
		_, _ = io.WriteString(w, `{"name":"projects/natter-test/messages/1"}`)
	default:
		f.t.Errorf("unexpected %s %s", r.Method, r.URL)
		w.WriteHeader(http.StatusNotFound)
	}
}

func credentials(t *testing.T, tokenURI string) string {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	sa := map[string]string{
		"type": "service_account", "project_id": "natter-test", "private_key_id": "kid1",
		"private_key":  string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email": "natter@natter-test.iam.gserviceaccount.com", "client_id": "1",
		"token_uri": tokenURI,
	}
	raw, _ := json.Marshal(sa)
	path := filepath.Join(t.TempDir(), "sa.json")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestSendThroughHTTPv1WithOAuth(t *testing.T) {
	f := &fakeGoogle{t: t}
	srv := httptest.NewServer(f)
	defer srv.Close()
	s, err := New(context.Background(), Config{CredentialsFile: credentials(t, srv.URL+"/token"), Endpoint: srv.URL + "/v1"})
	if err != nil {
		t.Fatal(err)
	}
	n := func(tok string) push.Notification {
		return push.Notification{ID: "m1:" + tok, DeviceID: "d-" + tok, Platform: store.PlatformAndroid, Token: tok, Title: "alice",
			Body: "hi", Badge: 2, ThreadID: "conv1", CollapseID: "conv1", Priority: push.PriorityHigh,
			Data: map[string]string{push.DataConversationID: "conv1", push.DataMessageID: "conv1-1", push.DataCursor: "9"}}
	}
	rs := s.Send(context.Background(), []push.Notification{n("good"), n("gone"), n("invalid")})
	if rs[0].Err != nil || rs[0].Dead {
		t.Fatalf("good: %+v", rs[0])
	}
	if !rs[1].Dead {
		t.Errorf("gone: %+v, want dead", rs[1])
	}
	if rs[2].Dead || rs[2].Err == nil {
		t.Errorf("invalid: %+v, want an error, not a dead token", rs[2])
	}
	if f.tokens == 0 || len(f.got) != 1 {
		t.Fatalf("tokens %d, accepted %v", f.tokens, f.got)
	}
	m := f.got[0]
	notif, _ := m["notification"].(map[string]any)
	data, _ := m["data"].(map[string]any)
	android, _ := m["android"].(map[string]any)
	an, _ := android["notification"].(map[string]any)
	for _, c := range []struct {
		field     string
		got, want any
	}{
		{"token", m["token"], "good"},
		{"notification.title", notif["title"], "alice"},
		{"notification.body", notif["body"], "hi"},
		{"data.conversation_id", data["conversation_id"], "conv1"},
		{"data.message_id", data["message_id"], "conv1-1"},
		{"data.cursor", data["cursor"], "9"},
		{"android.collapse_key", android["collapse_key"], "conv1"},
		{"android.priority", strings.ToLower(toString(android["priority"])), "high"},
		{"android.notification.tag", an["tag"], "conv1"},
		{"android.notification.notification_count", an["notification_count"], float64(2)},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.field, c.got, c.want)
		}
	}
}

func toString(v any) string { s, _ := v.(string); return s }
