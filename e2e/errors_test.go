package e2e

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// wantFrameError checks the error frame answering ref, and that the
// connection stays open.
func wantFrameError(t *testing.T, c *wsClient, from int, ref string, status int, code string) obj {
	t.Helper()
	e := c.waitFrom(from, "answer to "+ref, func(f obj) bool { return f["ref"] == ref || (ref == "" && f["type"] == "error") })
	if e["type"] != "error" || num(e, "status") != int64(status) || e["code"] != code || str(e, "message") == "" {
		t.Errorf("frame %s answered %v, want error %d %s", ref, e, status, code)
	}
	c.ping("alive-after-" + ref)
	return e
}

func jwtPart(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

func TestContractErrors(t *testing.T) {
	t.Parallel()
	s := start(t)
	alice, as := s.newUser("alice", 1)
	bob, bs := s.newUser("bob", 1)
	_, cs := s.newUser("carol", 1)
	a := as[0]
	ws, _ := s.connect(a, "")
	first := s.sendREST(a, bob, "ok-1", "hello")
	conv := str(first, "conversation_id")
	msgID := str(first, "message_id")

	send := func(body any) resp { t.Helper(); return s.do("POST", "/v1/messages", a.access, body) }
	wsSend := func(ref string, f obj) int {
		t.Helper()
		from := ws.mark()
		f["type"], f["ref"] = "send", ref
		ws.send(f)
		return from
	}
	without := func(field string) obj {
		b := sendBody("x-"+field, bob.id, "hi")
		delete(b, field)
		return b
	}

	t.Run("400 bad_request", func(t *testing.T) {
		wantError(t, send(`{"client_message_id": "m", "recipient_id": `), http.StatusBadRequest, "bad_request")
		wantError(t, send(`[1, 2]`), http.StatusBadRequest, "bad_request")
		for _, f := range []string{"client_message_id", "recipient_id", "message_type", "content", "timestamp"} {
			r := send(without(f))
			if r.status != http.StatusBadRequest || r.errorCode() != "bad_request" {
				t.Errorf("send without %s: %d %s, want 400 bad_request", f, r.status, r.raw)
			}
			from := wsSend("no-"+f, without(f))
			wantFrameError(t, ws, from, "no-"+f, 400, "bad_request")
		}
		b := sendBody("x-empty", bob.id, "")
		wantError(t, send(b), http.StatusBadRequest, "bad_request")
		b = sendBody("x-type", bob.id, "hi")
		b["message_type"] = "carrier-pigeon"
		wantError(t, send(b), http.StatusBadRequest, "bad_request")
		wantError(t, send(sendBody(strings.Repeat("c", 129), bob.id, "hi")), http.StatusBadRequest, "bad_request")
		wantError(t, s.do("POST", "/v1/auth/register", "", obj{"username": "No Spaces!", "password": password}), http.StatusBadRequest, "bad_request")
		wantError(t, s.do("POST", "/v1/auth/register", "", obj{"username": "dave", "password": "short"}), http.StatusBadRequest, "bad_request")
		for _, q := range []string{"limit=abc", "limit=0", "cursor=not-a-cursor"} {
			wantError(t, s.do("GET", "/v1/conversations/"+conv+"/messages?"+q, a.access, nil), http.StatusBadRequest, "bad_request")
			wantError(t, s.do("GET", "/v1/conversations?"+q, a.access, nil), http.StatusBadRequest, "bad_request")
		}
		wantError(t, s.do("GET", "/v1/events?timeout=abc", a.access, nil), http.StatusBadRequest, "bad_request")
		wantError(t, s.do("POST", "/v1/messages/"+msgID+"/status", bs[0].access, obj{"status": "seen"}), http.StatusBadRequest, "bad_request")

		// Over WebSocket: a malformed frame, an unknown type, no type, a
		// ref over 128 bytes; each gets an error frame and the
		// connection lives on.
		from := ws.mark()
		ws.send([]byte(`{"type": "send", "ref": "broken"`))
		wantFrameError(t, ws, from, "", 400, "bad_request")
		from = ws.mark()
		ws.send(obj{"type": "teleport", "ref": "unknown-type"})
		wantFrameError(t, ws, from, "unknown-type", 400, "bad_request")
		from = ws.mark()
		ws.send(obj{"ref": "no-type"})
		wantFrameError(t, ws, from, "no-type", 400, "bad_request")
		from = ws.mark()
		ws.send(obj{"type": "ping", "ref": strings.Repeat("r", 129)})
		wantFrameError(t, ws, from, "", 400, "bad_request")
		// A 128-byte ref is fine and copied.
		ws.ping(strings.Repeat("r", 128))
	})

	t.Run("400 content_too_long", func(t *testing.T) {
		long := strings.Repeat("a", 65537)
		wantError(t, send(sendBody("long-1", bob.id, long)), http.StatusBadRequest, "content_too_long")
		from := wsSend("long-2", sendBody("long-2", bob.id, long))
		wantFrameError(t, ws, from, "long-2", 400, "content_too_long")
		// Multi-byte characters count in bytes: 21,846 × 3 bytes = 65,538.
		wantError(t, send(sendBody("long-3", bob.id, strings.Repeat("€", 21846))), http.StatusBadRequest, "content_too_long")
	})

	t.Run("400 invalid_utf8", func(t *testing.T) {
		raw := []byte(`{"client_message_id": "utf-1", "recipient_id": "` + bob.id + `", "message_type": "user", "content": "bad ` + "\xff\xfe" + ` byte", "timestamp": 1}`)
		wantError(t, send(raw), http.StatusBadRequest, "invalid_utf8")
		from := ws.mark()
		ws.send([]byte(`{"type": "send", "ref": "utf-2", "client_message_id": "utf-2", "recipient_id": "` + bob.id + `", "message_type": "user", "content": "bad ` + "\xc3\x28" + `", "timestamp": 1}`))
		e := ws.waitFrom(from, "invalid utf8 answer", isType("error"))
		if num(e, "status") != 400 || e["code"] != "invalid_utf8" {
			t.Errorf("invalid UTF-8 frame answered %v, want error 400 invalid_utf8", e)
		}
		ws.ping("alive-after-utf8")
	})

	t.Run("401", func(t *testing.T) {
		now := time.Now().Unix()
		claims := obj{"iss": "natter", "sub": alice.id, "did": a.deviceID, "iat": now, "exp": now + 3600}
		none := jwtPart(obj{"alg": "none", "typ": "JWT"}) + "." + jwtPart(claims) + "."
		body := jwtPart(obj{"alg": "HS256", "typ": "JWT"}) + "." + jwtPart(claims)
		mac := hmac.New(sha256.New, []byte("not natter's key, not natter's key"))
		mac.Write([]byte(body))
		otherKey := body + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
		parts := strings.Split(a.access, ".")
		tampered := parts[0] + "." + jwtPart(obj{"iss": "natter", "sub": bob.id, "did": a.deviceID, "iat": now, "exp": now + 3600}) + "." + parts[2]
		for name, tok := range map[string]string{"no token": "", "garbage": "garbage", "alg none": none, "another key": otherKey, "tampered": tampered} {
			r := s.do("GET", "/v1/me/devices", tok, nil)
			if r.status != http.StatusUnauthorized || r.errorCode() != "unauthorized" {
				t.Errorf("%s: %d %s, want 401 unauthorized", name, r.status, r.raw)
			}
			if _, res, err := s.tryDial(tok, "", nil); err == nil || res == nil || res.StatusCode != http.StatusUnauthorized {
				code := 0
				if res != nil {
					code = res.StatusCode
				}
				t.Errorf("%s: WebSocket upgrade answered %d (err %v), want 401", name, code, err)
			}
		}
		wantError(t, s.do("POST", "/v1/auth/login", "", obj{"username": "alice", "password": "wrong password"}), http.StatusUnauthorized, "unauthorized")
		wantError(t, s.do("POST", "/v1/auth/login", "", obj{"username": "nobody", "password": password}), http.StatusUnauthorized, "unauthorized")
		wantError(t, s.do("POST", "/v1/auth/refresh", "", obj{"refresh_token": "made-up"}), http.StatusUnauthorized, "unauthorized")
	})

	t.Run("403 forbidden", func(t *testing.T) {
		b := sendBody("as-bob", alice.id, "I am bob")
		b["sender_id"] = bob.id
		wantError(t, send(b), http.StatusForbidden, "forbidden")
		b["client_message_id"] = "as-bob-ws"
		from := wsSend("as-bob-ws", b)
		wantFrameError(t, ws, from, "as-bob-ws", 403, "forbidden")
		// One's own sender_id is fine.
		b = sendBody("as-me", bob.id, "I am alice")
		b["sender_id"] = alice.id
		if r := send(b); r.status != http.StatusCreated {
			t.Errorf("send with own sender_id: %d %s", r.status, r.raw)
		}
	})

	t.Run("404 not_found", func(t *testing.T) {
		c := cs[0]
		for _, p := range []string{"/v1/users/01NOSUCHUSER0000000000000", "/v1/users/by-username/nobody"} {
			wantError(t, s.do("GET", p, a.access, nil), http.StatusNotFound, "not_found")
		}
		wantError(t, send(sendBody("to-nobody", "01NOSUCHUSER0000000000000", "hi")), http.StatusNotFound, "not_found")
		wantError(t, s.do("POST", "/v1/conversations", a.access, obj{"peer_id": "01NOSUCHUSER0000000000000"}), http.StatusNotFound, "not_found")
		// Another pair's conversation and message look like nothing.
		wantError(t, s.do("GET", "/v1/conversations/"+conv+"/messages", c.access, nil), http.StatusNotFound, "not_found")
		wantError(t, s.do("GET", "/v1/conversations/"+conv+"/messages", c.access, nil), http.StatusNotFound, "not_found")
		wantError(t, s.do("POST", "/v1/messages/"+msgID+"/status", c.access, obj{"status": "read", "timestamp": 1}), http.StatusNotFound, "not_found")
		wantError(t, s.do("DELETE", "/v1/messages/"+msgID+"?for=me", c.access, nil), http.StatusNotFound, "not_found")
		wantError(t, s.do("GET", "/v1/conversations/dnosuchconversation/messages", a.access, nil), http.StatusNotFound, "not_found")
		wantError(t, s.do("POST", "/v1/messages/"+conv+"-999/status", bs[0].access, obj{"status": "read", "timestamp": 1}), http.StatusNotFound, "not_found")
		wantError(t, s.do("POST", "/v1/messages/no-such-message/status", bs[0].access, obj{"status": "read", "timestamp": 1}), http.StatusNotFound, "not_found")
		from := ws.mark()
		ws.send(obj{"type": "receipt", "message_id": "no-such-message", "status": "read", "ref": "rcpt-404"})
		wantFrameError(t, ws, from, "rcpt-404", 404, "not_found")
		// carol's attempt changed nothing: bob's message is unread, and
		// alice's is still there.
		if h := s.history(as[0], conv); h[len(h)-1].Deleted {
			t.Errorf("a refused delete deleted: %v", h[len(h)-1])
		}
	})

	t.Run("409 username_taken", func(t *testing.T) {
		wantError(t, s.do("POST", "/v1/auth/register", "", obj{"username": "alice", "password": "another password"}), http.StatusConflict, "username_taken")
		// The original account is untouched.
		s.login(alice)
	})

	t.Run("413 too_large", func(t *testing.T) {
		big := sendBody("huge", bob.id, strings.Repeat("z", 1<<20+1024))
		wantError(t, send(big), http.StatusRequestEntityTooLarge, "too_large")
		from := wsSend("huge-ws", big)
		e := ws.waitFrom(from, "answer to an oversized frame", isType("error"))
		if num(e, "status") != 413 || e["code"] != "too_large" {
			t.Errorf("oversized frame answered %v, want error 413 too_large", e)
		}
		ws.ping("alive-after-413")
	})

	t.Run("refused requests changed nothing", func(t *testing.T) {
		// Two messages were stored (ok-1 and as-me): the next is seq 3.
		if ack := ws.sendWait(bob, "ok-2", "after all the refusals"); num(ack, "seq") != 3 {
			t.Errorf("next message after refusals has seq %d, want 3", num(ack, "seq"))
		}
		h := s.history(bs[0], conv)
		if len(h) != 3 {
			t.Errorf("history has %d messages, want 3", len(h))
		}
		for _, id := range []string{"x-empty", "long-1", "long-2", "utf-1", "utf-2", "as-bob", "huge", "huge-ws"} {
			r := s.sendREST(a, bob, id, "now valid")
			if r["duplicate"] != false {
				t.Errorf("%s was refused but is now a duplicate: %v", id, r)
			}
		}
	})
}

func TestTokenExpired(t *testing.T) {
	t.Parallel()
	s := start(t, "--access-token-ttl", "1s")
	u := s.register("alice")
	// Expiry is in whole seconds, so a token lives up to 1 s: log in
	// until a socket opens with one.
	var (
		d  device
		ws *wsClient
	)
	for try := 0; ws == nil; try++ {
		if try == 10 {
			t.Fatal("no WebSocket opened with a fresh token in 10 tries")
		}
		d = s.login(u)
		ws, _, _ = s.tryDial(d.access, "", nil)
	}
	ws.name = "expiring"
	eventually(t, "the access token expires", func() bool {
		return s.do("GET", "/v1/me/devices", d.access, nil).status == http.StatusUnauthorized
	})
	wantError(t, s.do("GET", "/v1/me/devices", d.access, nil), http.StatusUnauthorized, "token_expired")
	if code := ws.waitClosed(wait); code != 4002 {
		t.Errorf("socket of an expired token closed with %d, want 4002", code)
	}
	if _, res, err := s.tryDial(d.access, "", nil); err == nil || res == nil || res.StatusCode != http.StatusUnauthorized {
		t.Errorf("WebSocket upgrade with an expired token: err %v, want 401", err)
	}
	// Refresh, then the call works (tokens live 1 s: retry a few times).
	refresh := d.refresh
	ok := false
	for range 5 {
		b := s.must(http.StatusOK, "POST", "/v1/auth/refresh", "", obj{"refresh_token": refresh})
		refresh = str(b, "refresh_token")
		if s.do("GET", "/v1/me/devices", str(b, "access_token"), nil).status == http.StatusOK {
			ok = true
			break
		}
	}
	if !ok {
		t.Error("a refreshed access token never worked")
	}
}

func TestRateLimited(t *testing.T) {
	t.Parallel()
	s := start(t, "--rate-limit", "on", "--send-burst", "3", "--send-rate", "1")
	_, as := s.newUser("alice", 1)
	bob, _ := s.newUser("bob", 1)
	ws, _ := s.connect(as[0], "")
	for i := 1; i <= 3; i++ {
		s.sendREST(as[0], bob, "rl-"+strconv.Itoa(i), "x")
	}
	r := s.do("POST", "/v1/messages", as[0].access, sendBody("rl-4", bob.id, "x"))
	wantError(t, r, http.StatusTooManyRequests, "rate_limited")
	if n, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || n < 1 {
		t.Errorf("Retry-After %q, want whole seconds >= 1", r.header.Get("Retry-After"))
	}
	from := ws.mark()
	ws.sendMsg(bob, "rl-5", "x")
	e := ws.waitFrom(from, "answer to rl-5", func(f obj) bool { return f["ref"] == "rl-5" })
	if e["type"] != "error" || num(e, "status") != 429 || e["code"] != "rate_limited" || num(e, "retry_after_ms") <= 0 {
		t.Errorf("rate-limited frame answered %v, want error 429 rate_limited with retry_after_ms", e)
	}
	ws.ping("alive-after-429")
	// After the delay, the refused message goes through with the next seq.
	var ack resp
	eventually(t, "a send accepted after the delay", func() bool {
		ack = s.do("POST", "/v1/messages", as[0].access, sendBody("rl-4", bob.id, "x"))
		return ack.status == http.StatusCreated
	})
	if num(ack.body, "seq") != 4 || ack.body["duplicate"] != false {
		t.Errorf("after the delay: %s, want seq 4, not a duplicate", ack.raw)
	}
}
