package apns

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/natter-chat/natter/push"
	"github.com/natter-chat/natter/store"
)

// fakeAPNs speaks APNs' provider API: HTTP/2 over TLS, POST
// /3/device/<token>, a provider JWT (ES256) in authorization, the apns-*
// headers, a JSON payload under "aps"; 200 with apns-id, or a status with
// {"reason": ...}.
type fakeAPNs struct {
	t   *testing.T
	key *ecdsa.PublicKey

	mu  sync.Mutex
	got []map[string]any
}

func (f *fakeAPNs) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	fail := func(status int, reason string) {
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(map[string]string{"reason": reason})
	}
	if r.ProtoMajor != 2 || r.TLS == nil {
		fail(http.StatusBadRequest, "not HTTP/2 over TLS")
		f.t.Errorf("request over %s, TLS %v", r.Proto, r.TLS != nil)
		return
	}
	tok, ok := strings.CutPrefix(r.URL.Path, "/3/device/")
	if r.Method != http.MethodPost || !ok || tok == "" {
		fail(http.StatusNotFound, "BadPath")
		return
	}
	bearer, _ := strings.CutPrefix(r.Header.Get("Authorization"), "bearer ")
	claims := jwt.MapClaims{}
	parsed, err := jwt.ParseWithClaims(bearer, claims, func(t *jwt.Token) (any, error) { return f.key, nil },
		jwt.WithValidMethods([]string{"ES256"}))
	if err != nil || !parsed.Valid || parsed.Header["kid"] != "KEY123" || claims["iss"] != "TEAM456" {
		fail(http.StatusForbidden, "InvalidProviderToken")
		f.t.Errorf("provider token: %v %v %v", err, parsed, claims)
		return
	}
	if r.Header.Get("apns-topic") != "chat.natter.app" || r.Header.Get("apns-push-type") != "alert" || r.Header.Get("apns-priority") != "10" {
		fail(http.StatusBadRequest, "BadTopic")
		f.t.Errorf("headers %v", r.Header)
		return
	}
	body, _ := io.ReadAll(r.Body)
	var p map[string]any
	if err := json.Unmarshal(body, &p); err != nil {
		fail(http.StatusBadRequest, "PayloadEmpty")
		return
	}
	p["_token"], p["_collapse"] = tok, r.Header.Get("apns-collapse-id")
	switch tok {
	case "gone":
		w.WriteHeader(http.StatusGone)
		_ = json.NewEncoder(w).Encode(map[string]any{"reason": "Unregistered", "timestamp": 1700000000000})
		return
	case "bad":
		fail(http.StatusBadRequest, "BadDeviceToken")
		return
	case "busy":
		fail(http.StatusServiceUnavailable, "ServiceUnavailable")
		return
	}
	f.mu.Lock()
	f.got = append(f.got, p)
	f.mu.Unlock()
	w.Header().Set("apns-id", fmt.Sprintf("id-%s", tok))
	w.WriteHeader(http.StatusOK)
}

func writeKey(t *testing.T) (string, *ecdsa.PublicKey) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "AuthKey_KEY123.p8")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, &k.PublicKey
}

func TestSendOverHTTP2WithTokenAuth(t *testing.T) {
	keyFile, pub := writeKey(t)
	f := &fakeAPNs{t: t, key: pub}
	srv := httptest.NewUnstartedServer(f)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	s, err := New(Config{KeyFile: keyFile, KeyID: "KEY123", TeamID: "TEAM456", Topic: "chat.natter.app", Host: srv.URL, RootCAs: roots})
	if err != nil {
		t.Fatal(err)
	}
	n := func(tok string) push.Notification {
		return push.Notification{ID: "m1:" + tok, DeviceID: "d-" + tok, Platform: store.PlatformIOS, Token: tok, Title: "alice",
			Body: "hi", Badge: 4, ThreadID: "conv1", CollapseID: "conv1", Priority: push.PriorityHigh,
			Data: map[string]string{push.DataConversationID: "conv1", push.DataMessageID: "conv1-1", push.DataCursor: "9"}}
	}
	rs := s.Send(context.Background(), []push.Notification{n("good"), n("gone"), n("bad"), n("busy")})
	if rs[0].Err != nil || rs[0].Dead {
		t.Errorf("good: %+v", rs[0])
	}
	for i, name := range []string{"gone", "bad"} {
		if r := rs[i+1]; !r.Dead || r.Err == nil {
			t.Errorf("%s: %+v, want dead", name, r)
		}
	}
	if r := rs[3]; r.Dead || r.Err == nil {
		t.Errorf("busy: %+v, want a retryable error", r)
	}
	if len(f.got) != 1 {
		t.Fatalf("accepted %v", f.got)
	}
	p := f.got[0]
	aps, _ := p["aps"].(map[string]any)
	alert, _ := aps["alert"].(map[string]any)
	for _, c := range []struct {
		field     string
		got, want any
	}{
		{"alert.title", alert["title"], "alice"},
		{"alert.body", alert["body"], "hi"},
		{"badge", aps["badge"], float64(4)},
		{"thread-id", aps["thread-id"], "conv1"},
		{"sound", aps["sound"], "default"},
		{"apns-collapse-id", p["_collapse"], "conv1"},
		{"conversation_id", p["conversation_id"], "conv1"},
		{"message_id", p["message_id"], "conv1-1"},
		{"cursor", p["cursor"], "9"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.field, c.got, c.want)
		}
	}
}
