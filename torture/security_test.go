//go:build torture

package torture

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/natter-chat/natter/internal/testnode"
)

// TestSecurity sweeps natter's edge: who may open a socket, with which
// token, how fast a revoked device is cut off, what another user's ids
// give away, how oversized input is refused, how floods are limited
// without slowing everyone else, and whether a client that never reads
// can grow the server's memory.
func TestSecurity(t *testing.T) {
	f := newFigures(t, "security")
	t.Run("origin", func(t *testing.T) { testOrigin(t, f) })
	t.Run("tokens", func(t *testing.T) { testTokens(t, f) })
	t.Run("revocation", func(t *testing.T) { testRevocation(t, f) })
	t.Run("other users' ids", func(t *testing.T) { testForeignIDs(t, f) })
	t.Run("oversized", func(t *testing.T) { testOversized(t, f) })
	t.Run("floods", func(t *testing.T) { testFloods(t, f) })
	t.Run("distributed guessing", func(t *testing.T) { testDistributedGuessing(t, f) })
	t.Run("slow reader", func(t *testing.T) { testSlowReader(t, f) })
}

func secCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func mustUser(ctx context.Context, t *testing.T, c *testnode.Client, name string, devices int) (testnode.User, []testnode.Device) {
	t.Helper()
	u, ds, err := c.NewUser(ctx, name, password, devices)
	if err != nil {
		t.Fatal(err)
	}
	return u, ds
}

// testOrigin: browsers send Origin; only the server's own and the
// allowed ones may open a socket, whatever token they carry.
func testOrigin(t *testing.T, f *figures) {
	ctx := secCtx(t)
	node := testnode.Start(t, testnode.Options{Flags: []string{"--allowed-origins", "https://app.example"}})
	rest := node.Client()
	defer rest.Close()
	_, as := mustUser(ctx, t, rest, "alice", 1)
	cases := []struct {
		origin string
		ok     bool
	}{
		{"", true},
		{"http://" + node.Addr(), true},
		{"https://app.example", true},
		{"https://evil.example", false},
		{"https://app.example.evil.example", false},
		{"https://evil.example/https://app.example", false},
		{"http://app.example", false},
		{"null", false},
		{"http://127.0.0.1:1", false},
		{"http://" + node.Addr() + ".evil.example", false},
	}
	refused, wrong := 0, 0
	for _, c := range cases {
		h := http.Header{}
		if c.origin != "" {
			h.Set("Origin", c.origin)
		}
		for _, inHeader := range []bool{false, true} {
			ws, res, err := node.Dial(ctx, as[0].Access, testnode.DialOptions{Header: h, TokenInHeader: inHeader})
			switch {
			case c.ok && err != nil:
				wrong++
				t.Errorf("Origin %q refused: %v", c.origin, err)
			case c.ok:
				if _, err := ws.WaitSynced(ctx); err != nil {
					t.Errorf("Origin %q: %v", c.origin, err)
				}
				ws.Close()
			case err == nil:
				wrong++
				ws.Close()
				t.Errorf("Origin %q opened a socket with the user's token", c.origin)
			case res == nil || res.StatusCode != http.StatusForbidden:
				wrong++
				t.Errorf("Origin %q: %v, want 403", c.origin, err)
			default:
				refused++
			}
		}
	}
	f.add("origins_tried", len(cases)*2)
	f.add("foreign_origins_refused_403", refused)
	f.expect("origin_mistakes", wrong, 0)
}

// testTokens: expired, malformed, unsigned and wrongly signed tokens are
// refused at the upgrade with 401, and on REST.
func testTokens(t *testing.T, f *figures) {
	ctx := secCtx(t)
	node := testnode.Start(t, testnode.Options{})
	rest := node.Client()
	defer rest.Close()
	alice, as := mustUser(ctx, t, rest, "alice", 2)
	key, err := os.ReadFile(filepath.Join(node.DataDir(), "keys", "token.key"))
	if err != nil {
		t.Fatalf("signing key: %v", err)
	}
	now := time.Now()
	claims := func(mod func(jwt.MapClaims)) jwt.MapClaims {
		c := jwt.MapClaims{"iss": "natter", "sub": alice.ID, "did": as[0].DeviceID, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
		if mod != nil {
			mod(c)
		}
		return c
	}
	sign := func(m jwt.SigningMethod, k any, c jwt.MapClaims) string {
		s, err := jwt.NewWithClaims(m, c).SignedString(k)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	b64 := func(v any) string { b, _ := json.Marshal(v); return base64.RawURLEncoding.EncodeToString(b) }
	parts := strings.Split(as[0].Access, ".")
	// Control: a token natter would sign itself is accepted, so the
	// refusals below are about what each one changes.
	good := sign(jwt.SigningMethodHS256, key, claims(nil))
	if ws, _, err := node.Dial(ctx, good, testnode.DialOptions{}); err != nil {
		t.Fatalf("a well-formed token signed with natter's key is refused: %v", err)
	} else {
		ws.Close()
	}
	// Revoke alice's second device for the revoked-token case.
	if err := rest.Call(ctx, http.StatusOK, "DELETE", "/v1/me/devices/"+as[1].DeviceID, as[0].Access, nil, nil); err != nil {
		t.Fatal(err)
	}
	bad := []struct {
		name, token, code string
	}{
		{"expired", sign(jwt.SigningMethodHS256, key, claims(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Minute).Unix() })), "token_expired"},
		{"alg none", b64(map[string]string{"alg": "none", "typ": "JWT"}) + "." + b64(claims(nil)) + ".", "unauthorized"},
		{"alg none, signature kept", b64(map[string]string{"alg": "none", "typ": "JWT"}) + "." + parts[1] + "." + parts[2], "unauthorized"},
		{"HS512 with natter's key", sign(jwt.SigningMethodHS512, key, claims(nil)), "unauthorized"},
		{"HS256 with another key", sign(jwt.SigningMethodHS256, []byte("not natter's key, not natter's key!"), claims(nil)), "unauthorized"},
		{"payload swapped to bob", parts[0] + "." + b64(claims(func(c jwt.MapClaims) { c["sub"] = "01BOBBOBBOBBOBBOBBOBBOBBOB" })) + "." + parts[2], "unauthorized"},
		{"no expiry", sign(jwt.SigningMethodHS256, key, claims(func(c jwt.MapClaims) { delete(c, "exp") })), "unauthorized"},
		{"other issuer", sign(jwt.SigningMethodHS256, key, claims(func(c jwt.MapClaims) { c["iss"] = "evil" })), "unauthorized"},
		{"no device", sign(jwt.SigningMethodHS256, key, claims(func(c jwt.MapClaims) { delete(c, "did") })), "unauthorized"},
		{"revoked device", as[1].Access, "unauthorized"},
		{"truncated", as[0].Access[:len(as[0].Access)-5], "unauthorized"},
		{"two parts", parts[0] + "." + parts[1], "unauthorized"},
		{"garbage", "garbage", "unauthorized"},
		{"refresh token as access token", as[0].Refresh, "unauthorized"},
		{"huge", strings.Repeat("a", 16<<10), "unauthorized"},
	}
	refused := 0
	for _, b := range bad {
		ok := true
		for _, inHeader := range []bool{false, true} {
			ws, res, err := node.Dial(ctx, b.token, testnode.DialOptions{TokenInHeader: inHeader})
			if err == nil {
				ws.Close()
				t.Errorf("%s token opened a socket", b.name)
				ok = false
				continue
			}
			if res == nil || res.StatusCode != http.StatusUnauthorized {
				t.Errorf("%s token at the upgrade: %v, want 401", b.name, err)
				ok = false
			}
		}
		r, err := rest.Do(ctx, "GET", "/v1/me/devices", b.token, nil)
		if err != nil {
			t.Fatal(err)
		}
		if r.Status != http.StatusUnauthorized || r.ErrorCode() != b.code {
			t.Errorf("%s token on REST: %s, want 401 %s", b.name, r, b.code)
			ok = false
		}
		if ok {
			refused++
		}
	}
	f.add("bad_tokens_tried", len(bad))
	f.expect("bad_tokens_refused_401", refused, len(bad))
}

// testRevocation: a revoked device's open sockets close with 4001 within
// a second, by DELETE /v1/me/devices/{id} and by a reused refresh token.
func testRevocation(t *testing.T, f *figures) {
	ctx := secCtx(t)
	node := testnode.Start(t, testnode.Options{})
	rest := node.Client()
	defer rest.Close()
	u, ds := mustUser(ctx, t, rest, "alice", 1)
	var latencies []time.Duration
	late, wrongCode := 0, 0
	cutOff := func(victim testnode.Device, revoke func() error, how string) {
		t.Helper()
		var socks []*testnode.WS
		for range 2 { // two sockets of the same device
			ws, _, err := node.Dial(ctx, victim.Access, testnode.DialOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := ws.WaitSynced(ctx); err != nil {
				t.Fatal(err)
			}
			socks = append(socks, ws)
		}
		began := time.Now()
		if err := revoke(); err != nil {
			t.Fatalf("%s: %v", how, err)
		}
		for _, ws := range socks {
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			code, err := ws.WaitClosed(wctx)
			cancel()
			took := time.Since(began)
			latencies = append(latencies, took)
			switch {
			case err != nil:
				late++
				t.Errorf("%s: socket still open after 10 s", how)
			case code != 4001:
				wrongCode++
				t.Errorf("%s: socket closed with %d, want 4001", how, code)
			case took > time.Second:
				late++
				t.Errorf("%s: socket closed after %s, want within 1 s", how, took)
			}
			ws.Close()
		}
		if _, res, err := node.Dial(ctx, victim.Access, testnode.DialOptions{}); err == nil || res == nil || res.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s: the revoked device's token still opens a socket (%v)", how, err)
		}
	}
	for i := range 5 {
		victim, err := rest.Login(ctx, u, fmt.Sprint("victim-", i))
		if err != nil {
			t.Fatal(err)
		}
		cutOff(victim, func() error {
			return rest.Call(ctx, http.StatusOK, "DELETE", "/v1/me/devices/"+victim.DeviceID, ds[0].Access, nil, nil)
		}, "DELETE /v1/me/devices")
	}
	// A refresh token presented twice means it leaked: the device goes.
	victim, err := rest.Login(ctx, u, "leaky")
	if err != nil {
		t.Fatal(err)
	}
	var fresh struct {
		AccessToken string `json:"access_token"`
	}
	if err := rest.Call(ctx, http.StatusOK, "POST", "/v1/auth/refresh", "", map[string]string{"refresh_token": victim.Refresh}, &fresh); err != nil {
		t.Fatal(err)
	}
	victim.Access = fresh.AccessToken
	cutOff(victim, func() error {
		return rest.Call(ctx, http.StatusUnauthorized, "POST", "/v1/auth/refresh", "", map[string]string{"refresh_token": victim.Refresh}, nil)
	}, "reused refresh token")
	slices.Sort(latencies)
	f.add("revoked_sockets", len(latencies))
	f.goal("revocation_to_close_max", latencies[len(latencies)-1], "≤ 1s")
	f.expect("revoked_sockets_late", late, 0)
	f.expect("revoked_sockets_wrong_code", wrongCode, 0)
}

// testForeignIDs: mallory uses alice's and bob's ids everywhere an id is
// taken. Every answer is 403 or 404 and carries none of their data, and
// nothing of theirs changes.
func testForeignIDs(t *testing.T, f *figures) {
	ctx := secCtx(t)
	node := testnode.Start(t, testnode.Options{})
	rest := node.Client()
	defer rest.Close()
	alice, as := mustUser(ctx, t, rest, "alice", 1)
	bob, bs := mustUser(ctx, t, rest, "bob", 1)
	_, ms := mustUser(ctx, t, rest, "mallory", 1)
	mal := ms[0]
	secret := fmt.Sprintf("secret-%d", time.Now().UnixNano())
	// alice's first cursor, so mallory can try to replay from it.
	aws, _, err := node.Dial(ctx, as[0].Access, testnode.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	aliceFirst, err := aws.WaitSynced(ctx)
	aws.Close()
	if err != nil {
		t.Fatal(err)
	}
	var acks []testnode.Ack
	for i := range 3 {
		a, err := rest.Send(ctx, as[0].Access, testnode.NewSend(fmt.Sprint("s-", i), bob.ID, fmt.Sprintf("%s %d", secret, i)))
		if err != nil {
			t.Fatal(err)
		}
		acks = append(acks, a)
	}
	conv, msgID := acks[0].ConversationID, acks[0].MessageID
	// bob writes to mallory: that message is hers to read, not to delete
	// for everyone.
	toMal, err := rest.Send(ctx, bs[0].Access, testnode.NewSend("b-1", mal.ID, "hello mallory"))
	if err != nil {
		t.Fatal(err)
	}

	attempts, refused := 0, 0
	leaks := 0
	check := func(what string, status int, body []byte) {
		t.Helper()
		attempts++
		if status == http.StatusForbidden || status == http.StatusNotFound {
			refused++
		} else {
			t.Errorf("%s: answered %d %.300s, want 403 or 404", what, status, body)
		}
		// The answer may echo the ids mallory sent, nothing else of theirs.
		if strings.Contains(string(body), secret) || strings.Contains(string(body), as[0].Refresh) ||
			strings.Contains(string(body), as[0].DeviceID) && !strings.Contains(what, as[0].DeviceID) {
			leaks++
			t.Errorf("%s: the answer leaks alice's data: %.300s", what, body)
		}
	}
	rq := func(method, path string, body any) {
		t.Helper()
		r, err := rest.Do(ctx, method, path, mal.Access, body)
		if err != nil {
			t.Fatal(err)
		}
		check(method+" "+path, r.Status, r.Body)
	}
	rq("GET", "/v1/conversations/"+conv, nil)
	rq("GET", "/v1/conversations/"+conv+"/messages", nil)
	rq("GET", "/v1/conversations/"+conv+"/messages?cursor=3&limit=100", nil)
	rq("PUT", "/v1/conversations/"+conv+"/mute", map[string]any{"until": time.Now().Add(time.Hour).UnixMilli()})
	for _, id := range []string{msgID, acks[2].MessageID, conv + "-99"} {
		rq("POST", "/v1/messages/"+id+"/status", map[string]any{"status": "read", "timestamp": 1})
		rq("POST", "/v1/messages/"+id+"/status", map[string]any{"status": "delivered", "timestamp": 1})
		rq("DELETE", "/v1/messages/"+id+"?for=me", nil)
		rq("DELETE", "/v1/messages/"+id+"?for=everyone", nil)
	}
	rq("DELETE", "/v1/messages/"+toMal.MessageID+"?for=everyone", nil)
	rq("DELETE", "/v1/me/devices/"+as[0].DeviceID, nil)
	rq("DELETE", "/v1/me/devices/"+bs[0].DeviceID, nil)
	rq("PUT", "/v1/me/devices/"+as[0].DeviceID+"/push", map[string]string{"platform": "ios", "token": "stolen"})
	rq("POST", "/v1/messages", func() testnode.SendRequest {
		r := testnode.NewSend("forged", bob.ID, "I am alice")
		r.SenderID = alice.ID
		return r
	}())
	rq("GET", "/v1/groups/"+conv, nil)
	rq("POST", "/v1/groups/"+conv+"/members", map[string]any{"user_ids": []string{mal.ID}})

	// Over WebSocket: alice's cursor is not one mallory was given (an
	// error frame 400, then close 1008, nothing replayed), and frames with
	// her ids answer an error.
	stolen, _, err := node.Dial(ctx, mal.Access, testnode.DialOptions{Cursor: aliceFirst.Cursor})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stolen.WaitSynced(ctx); err == nil {
		t.Errorf("mallory's WebSocket from alice's cursor got synced, want 400 and a close")
	}
	for _, fr := range stolen.Frames(0) {
		if fr.Durable() {
			leaks++
			t.Errorf("mallory's socket from alice's cursor replayed: %.300s", fr.Raw)
		}
	}
	stolen.Close()
	ws, _, err := node.Dial(ctx, mal.Access, testnode.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if _, err := ws.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
	frames := []map[string]any{
		{"type": "receipt", "ref": "r1", "message_id": msgID, "status": "read"},
		{"type": "receipt", "ref": "r2", "message_id": acks[2].MessageID, "status": "delivered"},
		{"type": "typing", "ref": "t1", "conversation_id": conv, "state": "composing"},
		{"type": "send", "ref": "f1", "client_message_id": "forged-ws", "recipient_id": bob.ID, "message_type": "user",
			"content": "I am alice", "timestamp": 1, "sender_id": alice.ID},
	}
	for _, fr := range frames {
		ans, err := ws.Request(ctx, fr["ref"].(string), fr)
		if err != nil {
			t.Fatal(err)
		}
		check(fmt.Sprintf("frame %s", fr["type"]), ans.ErrorStatus(), ans.Raw)
	}
	for _, fr := range ws.Frames(0) {
		if strings.Contains(string(fr.Raw), secret) || fr.ConversationID == conv {
			leaks++
			t.Errorf("mallory's socket carried alice's event: %.300s", fr.Raw)
		}
	}
	r, err := rest.Do(ctx, "GET", "/v1/events?cursor="+aliceFirst.Cursor+"&timeout=0", mal.Access, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Cursors are per user: alice's is not one mallory was given (400).
	if r.Status != http.StatusBadRequest || strings.Contains(string(r.Body), secret) || strings.Contains(string(r.Body), conv) {
		leaks++
		t.Errorf("mallory's long-poll from alice's cursor: %.300s", r)
	}

	// Nothing of alice's and bob's changed.
	h, err := rest.History(ctx, as[0].Access, conv)
	if err != nil {
		t.Fatal(err)
	}
	changed := 0
	for _, m := range h {
		if m.Deleted || m.Status != "sent" || !strings.HasPrefix(m.Content, secret) {
			changed++
			t.Errorf("alice's message changed by mallory's attempts: %+v", m)
		}
	}
	if len(h) != len(acks) {
		changed++
		t.Errorf("alice's conversation has %d messages, want %d", len(h), len(acks))
	}
	if err := rest.Call(ctx, http.StatusOK, "GET", "/v1/me/devices", as[0].Access, nil, nil); err != nil {
		changed++
		t.Errorf("alice's device after mallory's attempts: %v", err)
	}
	f.add("foreign_id_attempts", attempts)
	f.expect("foreign_id_refused_403_404", refused, attempts)
	f.expect("foreign_id_leaks", leaks, 0)
	f.expect("foreign_id_changes", changed, 0)
}

// testOversized: a frame or request body over the read limit (1 MiB) is
// refused with 413; the socket survives a frame between the limit and the
// hard cap and is closed past the cap.
func testOversized(t *testing.T, f *figures) {
	ctx := secCtx(t)
	node := testnode.Start(t, testnode.Options{})
	rest := node.Client()
	defer rest.Close()
	_, as := mustUser(ctx, t, rest, "alice", 1)
	bob, _ := mustUser(ctx, t, rest, "bob", 1)
	huge := strings.Repeat("x", 1<<20+1)
	tried, refused := 0, 0
	bodies := []struct{ method, path, token string }{
		{"POST", "/v1/auth/register", ""},
		{"POST", "/v1/auth/login", ""},
		{"POST", "/v1/auth/refresh", ""},
		{"POST", "/v1/messages", as[0].Access},
		{"POST", "/v1/conversations", as[0].Access},
		{"POST", "/v1/messages/x-1/status", as[0].Access},
		{"PUT", "/v1/me/privacy", as[0].Access},
	}
	for _, b := range bodies {
		tried++
		r, err := rest.Do(ctx, b.method, b.path, b.token, `{"content":"`+huge+`"}`)
		if err != nil {
			t.Fatal(err)
		}
		if r.Status == http.StatusRequestEntityTooLarge && r.ErrorCode() == "too_large" {
			refused++
		} else {
			t.Errorf("%s %s with a %d-byte body: %s, want 413 too_large", b.method, b.path, len(huge)+14, r)
		}
	}
	ws, _, err := node.Dial(ctx, as[0].Access, testnode.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if _, err := ws.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
	tried++
	req := testnode.NewSend("big", bob.ID, huge)
	ans, err := ws.Request(ctx, "", sendFrame(req))
	if err == nil && ans.Type == "error" && ans.ErrorStatus() == http.StatusRequestEntityTooLarge && ans.Code == "too_large" {
		refused++
	} else {
		t.Errorf("a frame over the read limit: %s %v, want error 413 too_large", ans.Raw, err)
	}
	if ans, err := ws.Request(ctx, "alive", map[string]string{"type": "ping", "ref": "alive"}); err != nil || ans.Type != "pong" {
		t.Errorf("the socket did not survive a frame over the read limit: %v", err)
	}
	// Past the hard cap (16 × the read limit) the socket is closed.
	tried++
	rss0, _ := node.RSS()
	// The write may fail halfway: the server closes the socket as soon
	// as the frame passes the cap.
	_ = ws.Send(ctx, []byte(`{"type":"ping","ref":"`+strings.Repeat("y", 17<<20)+`"}`))
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	code, err := ws.WaitClosed(wctx)
	cancel()
	if err == nil {
		refused++
		f.add("frame_past_hard_cap_close_code", code)
	} else {
		t.Errorf("a 17 MiB frame: the socket stays open")
	}
	rss1, _ := node.RSS()
	f.add("rss_growth_after_17MiB_frame_MiB", (rss1-rss0)>>20)
	f.add("oversized_tried", tried)
	f.expect("oversized_refused", refused, tried)
}

// testFloods runs with natter's default rate limits. mallory floods
// sends, and one client address floods login and register, while alice
// sends a message every 50 ms and measures each ack: mallory and the
// flooding address get 429 with Retry-After, another address still logs
// in, and alice's p99 stays under 100 ms.
func testFloods(t *testing.T, f *figures) {
	ctx := secCtx(t)
	node := testnode.Start(t, testnode.Options{RateLimit: true})
	rest := node.Client()
	defer rest.Close()
	_, as := mustUser(ctx, t, rest, "alice", 1)
	bob, _ := mustUser(ctx, t, rest, "bob", 1)
	mallory, ms := mustUser(ctx, t, rest, "mallory", 1)

	aws, _, err := node.Dial(ctx, as[0].Access, testnode.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer aws.Close()
	if _, err := aws.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
	// Warm up alice's path (conversation creation, caches) before timing.
	if _, err := aws.Request(ctx, "warm", sendFrame(testnode.NewSend("warm", bob.ID, "warm up"))); err != nil {
		t.Fatal(err)
	}

	floodCtx, stopFlood := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var (
		sendTried, send429, sendNoRetry atomic.Int64
		authTried, auth429, authNoRetry atomic.Int64
		wsTried, ws429                  atomic.Int64
	)
	// mallory over REST, 4 at a time.
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; floodCtx.Err() == nil; i++ {
				r, err := rest.Do(floodCtx, "POST", "/v1/messages", ms[0].Access, testnode.NewSend(fmt.Sprintf("flood-%d-%d", w, i), bob.ID, "spam"))
				if err != nil {
					continue
				}
				sendTried.Add(1)
				if r.Status == http.StatusTooManyRequests {
					send429.Add(1)
					if n, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || n < 1 {
						sendNoRetry.Add(1)
					}
				}
			}
		}()
	}
	// mallory over WebSocket, in windows of 32 frames.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; floodCtx.Err() == nil; i++ {
			mws, _, err := node.Dial(floodCtx, ms[0].Access, testnode.DialOptions{})
			if err != nil {
				continue
			}
			reqs := make([]testnode.SendRequest, 32)
			for j := range reqs {
				reqs[j] = testnode.NewSend(fmt.Sprintf("wsflood-%d-%d", i, j), bob.ID, "spam")
			}
			answers, _ := sendAll(floodCtx, mws, reqs, 32)
			for _, a := range answers {
				wsTried.Add(1)
				if a.Type == "error" && a.ErrorStatus() == http.StatusTooManyRequests && a.RetryAfterMS > 0 {
					ws429.Add(1)
				}
			}
			mws.Close()
		}
	}()
	// One client address floods login (wrong password) and register.
	flooder := testnode.NewClient(node.URL(), testnode.ClientOptions{SourceIP: "127.0.0.3"})
	defer flooder.Close()
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; floodCtx.Err() == nil; i++ {
				var r *testnode.Response
				var err error
				if w == 0 {
					r, err = flooder.Do(floodCtx, "POST", "/v1/auth/login", "", map[string]string{"username": mallory.Name, "password": "guess-" + strconv.Itoa(i)})
				} else {
					r, err = flooder.Do(floodCtx, "POST", "/v1/auth/register", "", map[string]string{"username": fmt.Sprintf("bot%d_%d", w, i), "password": password})
				}
				if err != nil {
					continue
				}
				authTried.Add(1)
				if r.Status == http.StatusTooManyRequests {
					auth429.Add(1)
					if n, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || n < 1 {
						authNoRetry.Add(1)
					}
				}
			}
		}()
	}

	// alice, meanwhile, one message every 50 ms (20/s: her allowance).
	var lat []time.Duration
	aliceErrors := 0
	tick := time.NewTicker(50 * time.Millisecond)
	for i := range 200 {
		<-tick.C
		ref := fmt.Sprint("a-", i)
		began := time.Now()
		ans, err := aws.Request(ctx, ref, sendFrame(testnode.NewSend(ref, bob.ID, "hello bob")))
		if err != nil {
			t.Fatal(err)
		}
		if ans.Type != "ack" {
			aliceErrors++
			t.Errorf("alice's send during the floods: %s", ans.Raw)
			continue
		}
		lat = append(lat, time.Since(began))
	}
	tick.Stop()
	// Another address logs in while the flooding one is limited.
	other := testnode.NewClient(node.URL(), testnode.ClientOptions{SourceIP: "127.0.0.4"})
	defer other.Close()
	_, otherErr := other.Login(ctx, mallory, "from another address")
	stopFlood()
	wg.Wait()

	slices.Sort(lat)
	f.add("flood_rest_sends", sendTried.Load())
	f.add("flood_rest_sends_429", send429.Load())
	f.add("flood_ws_sends", wsTried.Load())
	f.add("flood_ws_sends_429", ws429.Load())
	f.add("flood_auth_requests", authTried.Load())
	f.add("flood_auth_429", auth429.Load())
	f.expect("429_without_retry_after", int(sendNoRetry.Load()+authNoRetry.Load()), 0)
	f.add("victim_sends", len(lat))
	f.add("victim_p50", percentile(lat, 50))
	f.goal("victim_p99", percentile(lat, 99), "< 100ms")
	f.add("victim_max", percentile(lat, 100))
	f.expect("victim_errors", aliceErrors, 0)
	f.goal("other_address_can_log_in", otherErr == nil, "true")
	if otherErr != nil {
		t.Errorf("login from another address during the flood: %v", otherErr)
	}
	if send429.Load() == 0 || ws429.Load() == 0 || auth429.Load() == 0 {
		t.Errorf("floods not limited: %d/%d REST sends, %d/%d WebSocket sends, %d/%d logins and registrations got 429",
			send429.Load(), sendTried.Load(), ws429.Load(), wsTried.Load(), auth429.Load(), authTried.Load())
	}
	if p := percentile(lat, 99); p >= 100*time.Millisecond {
		t.Errorf("alice's send p99 during the floods is %s, want under 100 ms", p)
	}
}

// testSlowReader: devices that never read while tens of MB are sent to
// each. The server's memory stays bounded (a bounded queue per
// connection, then a disconnect), and nothing is lost: a device resumes
// from its cursor and gets every message. The same load with no device
// connected is the control: the RSS growth both share (stream caches,
// garbage) is not the stalled sockets' doing.
func testSlowReader(t *testing.T, f *figures) {
	control := slowReaders(t, 0)
	stalled := slowReaders(t, 16)
	f.add("stalled_sockets", stalled.sockets)
	f.add("sent_to_each_MiB", stalled.sentMiB)
	f.add("rss_growth_control_MiB", control.growthMiB)
	f.add("rss_growth_stalled_MiB", stalled.growthMiB)
	extra := stalled.growthMiB - control.growthMiB
	// Per socket, natter queues at most 256 events and 64 answers (about
	// 1.3 MiB of 4 KiB messages) and a 4 MiB replay batch; buffering
	// everything would add sent × sockets.
	bound := int64(stalled.sockets*6 + 64)
	f.goal("rss_extra_for_stalled_MiB", extra, fmt.Sprintf("< %d (unbounded: ≥ %d)", bound, stalled.sockets*stalled.sentMiB))
	if extra >= bound {
		t.Errorf("%d stalled sockets cost %d MiB more RSS than none (sent %d MiB each); want under %d MiB",
			stalled.sockets, extra, stalled.sentMiB, bound)
	}
	f.goal("stalled_sockets_cut_off", stalled.cutOff, "true")
	if !stalled.cutOff {
		t.Errorf("the victim still shows online %s after the sends: stalled sockets are not disconnected", wait)
	}
	f.add("stalled_close_code", stalled.closeCode)
	f.expect("messages_lost_by_stalled_devices", stalled.lost, 0)
}

type slowResult struct {
	sockets, sentMiB, closeCode, lost int
	growthMiB                         int64
	cutOff                            bool
}

// slowReaders sends 4 KiB messages, 47 MiB in all, to a user with
// devices stalled sockets that never read, and measures the server's RSS.
func slowReaders(t *testing.T, devices int) slowResult {
	ctx := secCtx(t)
	node := testnode.Start(t, testnode.Options{})
	defer func() { _ = node.Kill9() }()
	rest := node.Client()
	defer rest.Close()
	victim, vs := mustUser(ctx, t, rest, "victim", max(devices, 1))
	vs = vs[:devices]
	var senders []testnode.Device
	for i := range 4 {
		_, ds := mustUser(ctx, t, rest, fmt.Sprint("sender", i), 1)
		senders = append(senders, ds[0])
	}
	var socks []*testnode.WS
	var firsts []string
	for _, d := range vs {
		ws, _, err := node.Dial(ctx, d.Access, testnode.DialOptions{})
		if err != nil {
			t.Fatal(err)
		}
		s, err := ws.WaitSynced(ctx)
		ws.Close()
		if err != nil {
			t.Fatal(err)
		}
		firsts = append(firsts, s.Cursor)
		// A small receive window, so the server sees a stalled socket soon.
		sw, _, err := node.Dial(ctx, d.Access, testnode.DialOptions{Cursor: s.Cursor, NoRead: true, ReadBuffer: 64 << 10})
		if err != nil {
			t.Fatal(err)
		}
		defer sw.Close()
		socks = append(socks, sw)
	}
	base, err := node.RSS()
	if err != nil {
		t.Fatal(err)
	}
	const (
		msgSize = 4 << 10
		perSend = 3000
	)
	res := slowResult{sockets: len(socks), sentMiB: len(senders) * perSend * msgSize >> 20}
	var peak atomic.Int64
	sampleCtx, stopSampling := context.WithCancel(ctx)
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tk := time.NewTicker(20 * time.Millisecond)
		defer tk.Stop()
		for {
			if rss, err := node.RSS(); err == nil && rss > peak.Load() {
				peak.Store(rss)
			}
			select {
			case <-sampleCtx.Done():
				return
			case <-tk.C:
			}
		}
	}()
	content := strings.Repeat("m", msgSize)
	var wg sync.WaitGroup
	var sendFailed atomic.Int64
	for i, d := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ws, _, err := node.Dial(ctx, d.Access, testnode.DialOptions{})
			if err != nil {
				sendFailed.Add(1)
				return
			}
			defer ws.Close()
			reqs := make([]testnode.SendRequest, perSend)
			for j := range reqs {
				reqs[j] = testnode.NewSend(fmt.Sprintf("big-%d-%d", i, j), victim.ID, content)
			}
			if ans, err := sendAll(ctx, ws, reqs, 16); err != nil || slices.ContainsFunc(ans, func(f testnode.Frame) bool { return f.Type != "ack" }) {
				sendFailed.Add(1)
			}
		}()
	}
	wg.Wait()
	if n := sendFailed.Load(); n > 0 {
		t.Errorf("%d senders were refused while the victim's devices stalled", n)
	}
	if devices > 0 {
		// The server notices the stalled sockets and drops them: the
		// victim shows offline.
		res.cutOff = eventually(wait, func() bool {
			var p struct {
				Status string `json:"status"`
			}
			err := rest.Call(ctx, http.StatusOK, "GET", "/v1/users/"+victim.ID+"/presence", senders[0].Access, nil, &p)
			return err == nil && p.Status == "offline"
		})
	} else {
		time.Sleep(time.Second) // as long as the stalled run's check takes, about
	}
	stopSampling()
	<-sampled
	res.growthMiB = (peak.Load() - base) >> 20
	// Nothing lost: a stalled device resumes from its first cursor (one
	// of them: a replay is 12,000 events).
	want := perSend * len(senders)
	for i, d := range vs {
		socks[i].StartReading()
		wctx, cancel := context.WithTimeout(ctx, wait)
		code, _ := socks[i].WaitClosed(wctx)
		cancel()
		socks[i].Close()
		if i == 0 {
			res.closeCode = code
		}
		if i > 0 {
			continue
		}
		frames, err := replay(ctx, node, d, firsts[i])
		if err != nil {
			t.Fatalf("device %d resuming: %v", i, err)
		}
		res.lost += max(0, want-len(framesToEvents(frames)))
	}
	return res
}
