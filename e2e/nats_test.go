package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natter-chat/natter/internal/testnode"
)

// startNATS runs a node whose embedded NATS listens (with operator
// credentials and the auth callout for NATS-native clients).
func startNATS(t *testing.T, flags ...string) (*server, string) {
	t.Helper()
	servers <- struct{}{}
	t.Cleanup(func() { <-servers })
	n := testnode.Start(t, testnode.Options{NATS: true, Flags: flags})
	c := n.Client()
	t.Cleanup(c.Close)
	u, err := url.Parse(n.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	return &server{t: t, node: n, client: c, addr: n.Addr()}, "nats://" + u.Host
}

// natsClient is a NATS-native natter client: logged in with a device's
// access token, replies under the device's inbox prefix.
type natsClient struct {
	t   *testing.T
	d   device
	nc  *nats.Conn
	mu  sync.Mutex
	err []error // asynchronous errors (permission violations)
}

func dialNATS(t *testing.T, addr string, d device, opts ...nats.Option) (*natsClient, error) {
	c := &natsClient{t: t, d: d}
	opts = append([]nats.Option{nats.Token(d.access), nats.CustomInboxPrefix("_INBOX." + d.deviceID),
		nats.MaxReconnects(0), nats.Timeout(10 * time.Second),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			c.mu.Lock()
			c.err = append(c.err, err)
			c.mu.Unlock()
		})}, opts...)
	nc, err := nats.Connect(addr, opts...)
	if err != nil {
		return nil, err
	}
	c.nc = nc
	t.Cleanup(nc.Close)
	return c, nil
}

func (c *natsClient) subject(op string) string {
	return "natter.api." + c.d.id + "." + c.d.deviceID + "." + op
}

// req sends a request and decodes the JSON answer.
func (c *natsClient) req(op string, body any) obj {
	c.t.Helper()
	b, _ := json.Marshal(body)
	m, err := c.nc.Request(c.subject(op), b, wait)
	if err != nil {
		c.t.Fatalf("nats request %s: %v", op, err)
	}
	var out obj
	if err := json.Unmarshal(m.Data, &out); err != nil {
		c.t.Fatalf("nats request %s: answer is not JSON: %q", op, m.Data)
	}
	return out
}

// waitPermissionError waits for nats-server to report a permissions
// violation naming what, asynchronously, as it does.
func (c *natsClient) waitPermissionError(what string) {
	c.t.Helper()
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		c.mu.Lock()
		for _, err := range c.err {
			if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), what) {
				c.mu.Unlock()
				return
			}
		}
		c.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Errorf("no permissions violation for %s; errors: %v", what, c.err)
}

// A NATS-native client logs in with its access token and uses the same
// chat core: send (an ack with seq; a retry is a duplicate), receive in a
// session (replay, synced, live, with cursors), receipts, sync pages,
// presence, and the contract's errors.
func TestNATSNativeClients(t *testing.T) {
	t.Parallel()
	s, natsAddr := startNATS(t)
	alice, bob := s.register("alice"), s.register("bob")
	a, b := s.login(alice), s.login(bob)

	ca, err := dialNATS(t, natsAddr, a)
	if err != nil {
		t.Fatalf("alice cannot log in to NATS with her access token: %v", err)
	}
	// The token as the password works too (nats --user x --password TOKEN).
	if _, err := dialNATS(t, natsAddr, b, nats.Token(""), nats.UserInfo("bob", b.access)); err != nil {
		t.Fatalf("the access token as the NATS password: %v", err)
	}
	cb, err := dialNATS(t, natsAddr, b)
	if err != nil {
		t.Fatal(err)
	}
	if me := ca.req("me", nil); str(me, "user_id") != alice.id || str(me, "device_id") != a.deviceID {
		t.Fatalf("me over NATS: %v", me)
	}

	// Bob opens a session: events arrive on his inbox subject.
	events := make(chan obj, 100)
	inbox := "_INBOX." + b.deviceID + ".events"
	sub, err := cb.nc.Subscribe(inbox, func(m *nats.Msg) {
		var f obj
		_ = json.Unmarshal(m.Data, &f)
		events <- f
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	sess := cb.req("connect", obj{"inbox": inbox})
	frames := str(sess, "frames")
	if frames == "" || num(sess, "heartbeat_ms") <= 0 {
		t.Fatalf("connect: %v", sess)
	}
	next := func(match func(obj) bool, what string) obj {
		t.Helper()
		timeout := time.After(wait)
		for {
			select {
			case f := <-events:
				if match(f) {
					return f
				}
			case <-timeout:
				t.Fatalf("no %s on bob's NATS session", what)
			}
		}
	}
	next(func(f obj) bool { return f["type"] == "synced" }, "synced")
	// Cursors are per user: alice pages her own events from here.
	aliceBefore := str(ca.req("sync", obj{}), "cursor")

	cmid := "5a0c1b9e-8a51-4a3c-9c3e-6f1d2a3b4c5d"
	ack := ca.req("send", obj{"client_message_id": cmid, "recipient_id": bob.id, "message_type": "user", "content": "hi over NATS", "timestamp": time.Now().UnixMilli()})
	if ack["type"] != "ack" || num(ack, "seq") != 1 || ack["duplicate"] != false {
		t.Fatalf("send over NATS: %v", ack)
	}
	msg := next(func(f obj) bool { return f["type"] == "message" && f["client_message_id"] == cmid }, "message")
	if msg["content"] != "hi over NATS" || str(msg, "cursor") == "" || msg["sender_id"] != alice.id {
		t.Fatalf("message event over NATS: %v", msg)
	}
	if dup := ca.req("send", obj{"client_message_id": cmid, "recipient_id": bob.id, "message_type": "user", "content": "again", "timestamp": time.Now().UnixMilli()}); dup["duplicate"] != true || str(dup, "message_id") != str(ack, "message_id") {
		t.Fatalf("a retry over NATS is not the original: %v", dup)
	}
	// The message is the same one REST sees.
	if h := s.history(b, str(ack, "conversation_id")); len(h) != 1 || h[0].Content != "hi over NATS" {
		t.Fatalf("history after a NATS send: %+v", h)
	}

	// Frames in the session are answered there, by ref.
	if err := cb.nc.Publish(frames, []byte(`{"type":"ping","ref":"p1"}`)); err != nil {
		t.Fatal(err)
	}
	next(func(f obj) bool { return f["type"] == "pong" && f["ref"] == "p1" }, "pong")
	if err := cb.nc.Publish(frames, []byte(`{"type":"receipt","message_id":"`+str(ack, "message_id")+`","status":"read"}`)); err != nil {
		t.Fatal(err)
	}
	// Alice's sync shows the read receipt, paged with cursors.
	deadline := time.Now().Add(wait)
	var page obj
	first := ca.req("sync", obj{})
	if first["synced"] != true || str(first, "cursor") == "" {
		t.Fatalf("sync without a cursor: %v", first)
	}
	var got []any
	cur := aliceBefore
	for time.Now().Before(deadline) {
		page = ca.req("sync", obj{"cursor": cur, "limit": 1})
		got, _ = page["events"].([]any)
		if len(got) > 0 && got[0].(map[string]any)["type"] == "receipt" {
			break
		}
		if len(got) > 0 {
			cur = str(page, "cursor") // alice's own message, before the receipt
		} else {
			time.Sleep(50 * time.Millisecond)
		}
	}
	if len(got) != 1 || got[0].(map[string]any)["status"] != "read" || got[0].(map[string]any)["cursor"] == "" {
		t.Fatalf("sync from alice's cursor before the message: %v", page)
	}
	if r := ca.req("sync", obj{"cursor": str(msg, "cursor")}); r["type"] != "error" || num(r, "status") != 400 {
		t.Errorf("alice's sync from bob's cursor: %v, want 400 (cursors are per user)", r)
	}

	// Presence and the contract's errors.
	p := ca.req("presence", obj{"user_ids": []string{bob.id}})
	if ps, _ := p["presence"].([]any); len(ps) != 1 || ps[0].(map[string]any)["status"] != "online" {
		t.Errorf("bob has a NATS session open, presence says %v", p)
	}
	for name, c := range map[string]struct {
		op   string
		body any
		code string
	}{
		"unknown recipient": {"send", obj{"client_message_id": "5a0c1b9e-8a51-4a3c-9c3e-000000000001", "recipient_id": "nobody", "message_type": "user", "content": "x", "timestamp": 1}, "not_found"},
		"malformed":         {"send", obj{"client_message_id": 5}, "bad_request"},
		"unknown op":        {"nothing", obj{}, "not_found"},
		"bad cursor":        {"sync", obj{"cursor": "zzz"}, "bad_request"},
		"foreign inbox":     {"connect", obj{"inbox": "_INBOX." + a.deviceID + "x.events"}, "bad_request"},
	} {
		if e := ca.req(c.op, c.body); e["type"] != "error" || e["code"] != c.code || strings.Contains(fmt.Sprint(e["message"]), "Go struct") {
			t.Errorf("%s: %v, want error %s", name, e, c.code)
		}
	}

	// A revoked device is refused at once, and its session is closed.
	s.must(http.StatusOK, "DELETE", "/v1/me/devices/"+b.deviceID, b.access, nil)
	next(func(f obj) bool { return f["type"] == "closed" && num(f, "code") == 4001 }, "closed 4001")
	deadline = time.Now().Add(wait)
	for {
		e := cb.req("me", nil)
		if e["code"] == "unauthorized" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a revoked device's NATS request: %v", e)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := dialNATS(t, natsAddr, b); err == nil {
		t.Error("a revoked device's token still logs in to NATS")
	}
}

// With a user's credentials every other subject is refused by
// nats-server itself: other users' subjects, JetStream's and KV's API,
// the stream subjects, everything; and natter answers no request whose
// reply is outside the caller's prefix.
func TestNATSNativePermissions(t *testing.T) {
	t.Parallel()
	s, natsAddr := startNATS(t)
	alice, bob := s.register("alice"), s.register("bob")
	a, b := s.login(alice), s.login(bob)
	if _, err := dialNATS(t, natsAddr, device{user: alice, deviceID: a.deviceID, access: "not-a-token"}); err == nil {
		t.Fatal("a bad token logged in to NATS")
	}
	if _, err := dialNATS(t, natsAddr, a, nats.Token("")); err == nil {
		t.Fatal("no credentials logged in to NATS")
	}
	ca, err := dialNATS(t, natsAddr, a)
	if err != nil {
		t.Fatal(err)
	}
	cb, err := dialNATS(t, natsAddr, b)
	if err != nil {
		t.Fatal(err)
	}
	// Bob listens on his own inbox: nothing alice does may reach it.
	leaked := make(chan *nats.Msg, 10)
	if _, err := cb.nc.ChanSubscribe("_INBOX."+b.deviceID+".>", leaked); err != nil {
		t.Fatal(err)
	}
	_ = cb.nc.Flush()

	for _, subject := range []string{">", "natter.>", "natter.deliver." + bob.id + ".>", "natter.inbox." + bob.id + ".m",
		"_INBOX." + b.deviceID + ".>", "$JS.API.>", "$KV.>", "$SYS.>", "natter.api." + bob.id + ".>"} {
		if _, err := ca.nc.SubscribeSync(subject); err != nil {
			t.Fatal(err)
		}
		ca.waitPermissionError(`Subscription to "` + subject + `"`)
	}
	for _, subject := range []string{"natter.conv.msg.x", "natter.inbox." + bob.id + ".m", "$JS.API.STREAM.NAMES",
		"$KV.natter_sessions." + b.deviceID, "natter.api." + bob.id + "." + b.deviceID + ".send", "natter.blocks.changed"} {
		m := nats.NewMsg(subject)
		m.Header.Set("Nats-Msg-Id", "forged")
		m.Data = []byte(`{}`)
		if err := ca.nc.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
		ca.waitPermissionError(`Publish to "` + subject + `"`)
	}
	// A request of alice's own whose reply points into bob's inbox gets
	// no answer anywhere.
	if err := ca.nc.PublishRequest(ca.subject("me"), "_INBOX."+b.deviceID+".stolen", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ca.nc.Request(ca.subject("me"), nil, wait); err != nil { // a later request is answered: the first was handled
		t.Fatal(err)
	}
	select {
	case m := <-leaked:
		t.Fatalf("natter answered into bob's inbox on alice's request: %s %s", m.Subject, m.Data)
	case <-time.After(500 * time.Millisecond):
	}
	// Nothing reached the streams: CONV holds no message.
	if h := s.history(a, s.conversation(a, bob)); len(h) != 0 {
		t.Fatalf("forged publishes stored messages: %+v", h)
	}

	// The operator's credentials still see everything.
	op, err := nats.Connect(s.node.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	defer op.Close()
	if _, err := op.Request("$JS.API.STREAM.NAMES", nil, wait); err != nil {
		t.Fatalf("operator JetStream API: %v", err)
	}
}

// The standard nats CLI is such a client: `nats req` with the token and
// the inbox prefix. Skipped when the CLI is not installed (.ci/run
// installs it: NATTER_TEST_NATS_CLI or nats on PATH).
func TestNATSNativeWithNATSCLI(t *testing.T) {
	t.Parallel()
	cli := os.Getenv("NATTER_TEST_NATS_CLI")
	if cli == "" {
		var err error
		if cli, err = exec.LookPath("nats"); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatal("CI: the nats CLI is not installed (set NATTER_TEST_NATS_CLI)")
			}
			t.Skip("nats CLI not installed")
		}
	}
	s, natsAddr := startNATS(t)
	alice, bob := s.register("alice"), s.register("bob")
	a := s.login(alice)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, cli, append([]string{"--server", natsAddr, "--token", a.access, "--inbox-prefix", "_INBOX." + a.deviceID}, args...)...)
		cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "XDG_CONFIG_HOME="+filepath.Join(t.TempDir(), "cfg"))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("nats %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	me := run("req", "--raw", "natter.api."+alice.id+"."+a.deviceID+".me", "")
	if !strings.Contains(me, `"user_id":"`+alice.id+`"`) {
		t.Fatalf("nats req me: %s", me)
	}
	body := fmt.Sprintf(`{"client_message_id":"6b1d2c0f-9b62-4b4d-8d4f-7a2e3b4c5d6e","recipient_id":%q,"message_type":"user","content":"from the nats CLI","timestamp":1}`, bob.id)
	ack := run("req", "--raw", "natter.api."+alice.id+"."+a.deviceID+".send", body)
	if !strings.Contains(ack, `"type":"ack"`) || !strings.Contains(ack, `"seq":1`) {
		t.Fatalf("nats req send: %s", ack)
	}
	// A request on another user's subject is refused by the server.
	cmd := exec.CommandContext(ctx, cli, "--server", natsAddr, "--token", a.access, "--inbox-prefix", "_INBOX."+a.deviceID,
		"req", "--timeout", "2s", "natter.api."+bob.id+".x.me", "")
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	out, _ := cmd.CombinedOutput() // the CLI reports the violation; its exit status varies by version
	if !strings.Contains(string(out), "Permissions Violation for Publish") || strings.Contains(string(out), "user_id") {
		t.Fatalf("nats req on another user's subject was not refused: %s", out)
	}
}

// examples/echobot, the Go example of a NATS-native bot, answers a
// message sent to it over REST.
func TestNATSNativeEchoBotExample(t *testing.T) {
	t.Parallel()
	s, natsAddr := startNATS(t)
	bin := filepath.Join(t.TempDir(), "echobot")
	build := exec.Command("go", "build", "-o", bin, "../examples/echobot")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build examples/echobot: %v\n%s", err, out)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bot := exec.CommandContext(ctx, bin, "-http", "http://"+s.addr, "-nats", natsAddr, "-username", "echobot", "-password", password)
	var log strings.Builder
	var logMu sync.Mutex
	bot.Stdout, bot.Stderr = &lockedWriter{w: &log, mu: &logMu}, &lockedWriter{w: &log, mu: &logMu}
	if err := bot.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = bot.Wait() }()

	alice := s.register("alice")
	a := s.login(alice)
	ws, _ := s.connect(a, "")
	var botID string
	deadline := time.Now().Add(wait)
	for botID == "" && time.Now().Before(deadline) {
		logMu.Lock()
		online := strings.Contains(log.String(), "echobot online")
		logMu.Unlock()
		if online {
			botID = str(s.must(http.StatusOK, "GET", "/v1/users/by-username/echobot", a.access, nil), "user_id")
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if botID == "" {
		logMu.Lock()
		defer logMu.Unlock()
		t.Fatalf("echobot did not come online:\n%s", log.String())
	}
	s.sendREST(a, user{id: botID, name: "echobot"}, "8c2e4f60-1a2b-4c3d-9e8f-0a1b2c3d4e5f", "echo this")
	echo := ws.waitFor("the echo", func(f obj) bool { return f["type"] == "message" && f["sender_id"] == botID })
	if echo["content"] != "echo this" {
		t.Fatalf("echo: %v", echo)
	}
}

type lockedWriter struct {
	w  *strings.Builder
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
