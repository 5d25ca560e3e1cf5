// Package e2e tests natter as its clients see it: the real binary, started
// as a process on a random port with its own data directory, driven over
// real HTTP and WebSocket connections, killed with SIGKILL and restarted.
// Every test checks a promise of shared/protocol.md (the client contract).
//
// The processes, the REST client and the WebSockets are
// internal/testnode's; this file holds the assertions' vocabulary on top
// of it (a failed step fails the test). With NATTER_TEST_POSTGRES_URL set
// every node keeps its store in a PostgreSQL database of its own.
package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/natter-chat/natter/internal/testnode"
)

// wait is the deadline of every poll: generous, because the suite runs
// under -race on a loaded two-core machine.
const wait = 20 * time.Second

const password = "password123"

// servers bounds how many natter processes run at once.
var servers = make(chan struct{}, 4)

func TestMain(m *testing.M) { os.Exit(testnode.Main(m)) }

// server is one natter node and the data directory it keeps across
// restarts.
type server struct {
	t      *testing.T
	node   *testnode.Node
	client *testnode.Client
	addr   string // host:port
}

// start runs a node with flags and waits until /healthz answers. Rate
// limits are off unless flags set --rate-limit. The node is killed when
// the test ends; its log is printed if the test failed. At most
// cap(servers) run at once.
func start(t *testing.T, flags ...string) *server {
	t.Helper()
	servers <- struct{}{}
	// Registered before testnode's cleanup, so it runs after the node is
	// gone.
	t.Cleanup(func() { <-servers })
	n := testnode.Start(t, testnode.Options{Flags: flags})
	c := n.Client()
	t.Cleanup(c.Close)
	return &server{t: t, node: n, client: c, addr: n.Addr()}
}

// waitLog waits until the server's log holds msg at least n times (over
// all its starts).
func (s *server) waitLog(msg string, n int) {
	s.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for strings.Count(s.node.Log(), msg) < n {
		if time.Now().After(deadline) {
			s.t.Fatalf("natter did not log %q %d times in 30 s:\n%s", msg, n, s.node.Log())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (s *server) exitState() *os.ProcessState { return s.node.ExitState() }

// pid is the running process's id.
func (s *server) pid() int { return s.node.Pid() }

// kill9 kills the process with SIGKILL and waits until it is gone.
func (s *server) kill9() {
	s.t.Helper()
	if err := s.node.Kill9(); err != nil {
		s.t.Fatal(err)
	}
}

// signal sends sig and returns a channel closed when the process exits.
func (s *server) signal(sig os.Signal) <-chan struct{} {
	s.t.Helper()
	exited := s.node.Exited()
	if err := s.node.Signal(sig); err != nil {
		s.t.Fatal(err)
	}
	return exited
}

// restart starts the process again on the same address, data directory
// (and database), after kill9 or a signal that ended it.
func (s *server) restart() {
	s.t.Helper()
	if err := s.node.Restart(context.Background()); err != nil {
		s.t.Fatalf("restart: %v\n%s", err, s.node.Log())
	}
}

// rssKB reads the process's resident set size in KiB.
func (s *server) rssKB() int {
	s.t.Helper()
	n, err := vmRSS(s.pid())
	if err != nil {
		s.t.Fatal(err)
	}
	return n
}

// vmRSS reads VmRSS (KiB) of a process.
func vmRSS(pid int) (int, error) {
	b, err := testnode.ProcessRSS(pid)
	return int(b >> 10), err
}

// REST.

// obj is a decoded JSON object.
type obj = map[string]any

// resp is one HTTP answer.
type resp struct {
	status int
	header http.Header
	body   obj // nil when the body is not a JSON object
	raw    []byte
}

// do sends a request. body may be nil, []byte or string (sent as is), or
// anything else (sent as JSON).
func (s *server) do(method, path, token string, body any) resp {
	s.t.Helper()
	r, err := s.tryDo(method, path, token, body)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	return r
}

func (s *server) tryDo(method, path, token string, body any) (resp, error) {
	res, err := s.client.Do(context.Background(), method, path, token, body)
	if err != nil {
		return resp{}, err
	}
	r := resp{status: res.Status, header: res.Header, raw: res.Body}
	_ = json.Unmarshal(res.Body, &r.body)
	return r, nil
}

// doJSON is do returning the status and the decoded body.
func (s *server) doJSON(method, path, token string, body any) (int, obj) {
	s.t.Helper()
	r := s.do(method, path, token, body)
	return r.status, r.body
}

// must does a request that has to answer want.
func (s *server) must(want int, method, path, token string, body any) obj {
	s.t.Helper()
	r := s.do(method, path, token, body)
	if r.status != want {
		s.t.Fatalf("%s %s: status %d, want %d: %s", method, path, r.status, want, r.raw)
	}
	return r.body
}

// errorCode is the code of an HTTP error body.
func (r resp) errorCode() string {
	e, _ := r.body["error"].(obj)
	c, _ := e["code"].(string)
	return c
}

// wantError checks an HTTP refusal: its status and the contract's body.
func wantError(t *testing.T, r resp, status int, code string) {
	t.Helper()
	if r.status != status || r.errorCode() != code {
		t.Errorf("got %d %s, want %d %s: %s", r.status, r.errorCode(), status, code, r.raw)
	}
	if e, _ := r.body["error"].(obj); e == nil || e["message"] == nil {
		t.Errorf("error body is not {\"error\":{\"code\",\"message\"}}: %s", r.raw)
	}
}

// user is a registered account; device is one login of it.
type user struct {
	id, name string
}

type device struct {
	user
	deviceID, access, refresh string
}

// label names a device in failure messages: user and device id tail.
func (d device) label() string {
	return d.name + "/" + d.deviceID[max(0, len(d.deviceID)-4):]
}

func (s *server) register(name string) user {
	s.t.Helper()
	b := s.must(http.StatusCreated, "POST", "/v1/auth/register", "", obj{"username": name, "password": password})
	if b["user_id"] == "" || b["username"] != name {
		s.t.Fatalf("register %s: %v", name, b)
	}
	return user{id: str(b, "user_id"), name: name}
}

// login adds a device to u.
func (s *server) login(u user) device {
	s.t.Helper()
	b := s.must(http.StatusOK, "POST", "/v1/auth/login", "", obj{"username": u.name, "password": password, "device_name": "e2e"})
	d := device{user: u, deviceID: str(b, "device_id"), access: str(b, "access_token"), refresh: str(b, "refresh_token")}
	if str(b, "user_id") != u.id || d.deviceID == "" || d.access == "" || d.refresh == "" || num(b, "expires_in") <= 0 {
		s.t.Fatalf("login %s: %v", u.name, b)
	}
	return d
}

// newUser registers name and logs in n devices.
func (s *server) newUser(name string, n int) (user, []device) {
	s.t.Helper()
	u := s.register(name)
	ds := make([]device, n)
	for i := range ds {
		ds[i] = s.login(u)
	}
	return u, ds
}

// sendREST posts a message and requires 201.
func (s *server) sendREST(d device, to user, cmid, content string) obj {
	s.t.Helper()
	return s.must(http.StatusCreated, "POST", "/v1/messages", d.access, sendBody(cmid, to.id, content))
}

func sendBody(cmid, to, content string) obj {
	return obj{"client_message_id": cmid, "recipient_id": to, "message_type": "user",
		"content": content, "timestamp": time.Now().UnixMilli()}
}

// conversation gets the 1:1 conversation id of d's user and peer.
func (s *server) conversation(d device, peer user) string {
	s.t.Helper()
	return str(s.must(http.StatusOK, "POST", "/v1/conversations", d.access, obj{"peer_id": peer.id}), "conversation_id")
}

// history returns every message of a conversation as d sees it, newest
// first, following next_cursor.
func (s *server) history(d device, conv string) []testnode.Message {
	s.t.Helper()
	h, err := s.client.History(context.Background(), d.access, conv)
	if err != nil {
		s.t.Fatalf("history: %v", err)
	}
	return h
}

// conversationSummary finds conv in d's conversation list.
func (s *server) conversationSummary(d device, conv string) obj {
	s.t.Helper()
	b := s.must(http.StatusOK, "GET", "/v1/conversations?limit=100", d.access, nil)
	for _, c := range objs(b["conversations"]) {
		if c["conversation_id"] == conv {
			return c
		}
	}
	s.t.Fatalf("conversation %s not in the list of %s: %v", conv, d.name, b)
	return nil
}

// JSON accessors.

func str(o obj, k string) string {
	s, _ := o[k].(string)
	return s
}

func num(o obj, k string) int64 {
	switch v := o[k].(type) {
	case float64:
		return int64(v)
	case json.Number:
		n, _ := v.Int64()
		return n
	}
	return -1
}

// at is xs[i], or the zero value when xs is shorter (so a wrong answer
// fails an assertion instead of panicking the whole suite).
func at[T any](xs []T, i int) T {
	if i < 0 || i >= len(xs) {
		var zero T
		return zero
	}
	return xs[i]
}

func objs(v any) []obj {
	a, _ := v.([]any)
	out := make([]obj, 0, len(a))
	for _, e := range a {
		if o, ok := e.(obj); ok {
			out = append(out, o)
		}
	}
	return out
}

// WebSocket.

// wsClient is one testnode WebSocket, its frames decoded as objects for
// the assertions. Waits look through the frames without consuming, so
// several waits can match the same frames.
type wsClient struct {
	t    *testing.T
	ws   *testnode.WS
	name string

	mu      sync.Mutex
	decoded []obj // ws's frames decoded so far, in order
}

// dial opens a WebSocket with token and, when not empty, cursor. It fails
// the test if the upgrade is refused.
func (s *server) dial(token, cursor string) *wsClient {
	s.t.Helper()
	c, _, err := s.tryDial(token, cursor, nil)
	if err != nil {
		s.t.Fatalf("dial: %v", err)
	}
	return c
}

// connect dials as d and waits for synced.
func (s *server) connect(d device, cursor string) (*wsClient, obj) {
	s.t.Helper()
	c := s.dial(d.access, cursor)
	c.name = d.label()
	return c, c.waitType("synced")
}

// tryDial returns the handshake's error and response instead of failing;
// a refusal's body stays readable in the response.
func (s *server) tryDial(token, cursor string, header http.Header) (*wsClient, *http.Response, error) {
	return s.tryDialWith(token, testnode.DialOptions{Cursor: cursor, Header: header, HandshakeTimeout: wait})
}

func (s *server) tryDialWith(token string, opts testnode.DialOptions) (*wsClient, *http.Response, error) {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	w, res, err := s.node.Dial(ctx, token, opts)
	if err != nil {
		return nil, res, err
	}
	s.t.Cleanup(func() { _ = w.Close() })
	return &wsClient{t: s.t, ws: w}, res, nil
}

// send writes one frame (JSON of v, or v itself when it is []byte).
func (c *wsClient) send(v any) {
	c.t.Helper()
	if err := c.trySend(v); err != nil {
		c.t.Fatalf("ws send: %v", err)
	}
}

func (c *wsClient) trySend(v any) error {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	return c.ws.Send(ctx, v)
}

// sendMsg sends a message frame (ref is the client_message_id).
func (c *wsClient) sendMsg(to user, cmid, content string) {
	c.t.Helper()
	f := sendBody(cmid, to.id, content)
	f["type"] = "send"
	c.send(f)
}

// sendWait sends a message and waits for its ack (or error) by ref.
func (c *wsClient) sendWait(to user, cmid, content string) obj {
	c.t.Helper()
	from := c.mark()
	c.sendMsg(to, cmid, content)
	f := c.waitFrom(from, "answer to "+cmid, func(f obj) bool {
		return (f["type"] == "ack" || f["type"] == "error") && f["ref"] == cmid
	})
	if f["type"] != "ack" {
		c.t.Fatalf("send %s: %v", cmid, f)
	}
	return f
}

// snapshot returns the frames received so far, decoding only the new
// ones (a catching-up client holds megabytes of them).
func (c *wsClient) snapshot() []obj {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, f := range c.ws.Frames(len(c.decoded)) {
		var o obj
		if err := json.Unmarshal(f.Raw, &o); err != nil {
			o = obj{"type": "<not json>", "raw": string(f.Raw)}
		}
		c.decoded = append(c.decoded, o)
	}
	return slices.Clip(c.decoded)
}

// mark is the number of frames received so far: waitFrom(mark(), ...)
// looks only at frames that arrive later.
func (c *wsClient) mark() int { return c.ws.Len() }

// waitN waits until at least n frames match and returns the matches so
// far (in arrival order).
func (c *wsClient) waitN(what string, n int, match func(obj) bool) []obj {
	c.t.Helper()
	return c.waitNFrom(0, what, n, match)
}

// waitFrom returns the first matching frame at or after index from.
func (c *wsClient) waitFrom(from int, what string, match func(obj) bool) obj {
	c.t.Helper()
	return c.waitNFrom(from, what, 1, match)[0]
}

func anyFrame(testnode.Frame) bool { return true }

func (c *wsClient) waitNFrom(from int, what string, n int, match func(obj) bool) []obj {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	for {
		frames := c.snapshot()
		var got []obj
		for _, f := range frames[min(from, len(frames)):] {
			if match(f) {
				got = append(got, f)
			}
		}
		if len(got) >= n {
			return got
		}
		// Until one more frame arrives, the connection ends or the deadline.
		if _, _, err := c.ws.Wait(ctx, len(frames), anyFrame); err != nil {
			if errors.Is(err, testnode.ErrClosed) {
				c.t.Fatalf("%s: waiting for %s (%d of %d): connection closed: %v; frames: %s", c.name, what, len(got), n, err, c.dump())
			}
			c.t.Fatalf("%s: no %s after %s (%d of %d); frames: %s", c.name, what, wait, len(got), n, c.dump())
		}
	}
}

// waitFor returns the first frame that matches, waiting for it.
func (c *wsClient) waitFor(what string, match func(obj) bool) obj {
	c.t.Helper()
	return c.waitN(what, 1, match)[0]
}

func (c *wsClient) waitType(typ string) obj {
	c.t.Helper()
	return c.waitFor(typ, isType(typ))
}

// waitMessage waits for the message event of cmid.
func (c *wsClient) waitMessage(cmid string) obj {
	c.t.Helper()
	return c.waitFor("message "+cmid, func(f obj) bool { return f["type"] == "message" && f["client_message_id"] == cmid })
}

// count counts the frames that match so far.
func (c *wsClient) count(match func(obj) bool) int {
	n := 0
	for _, f := range c.snapshot() {
		if match(f) {
			n++
		}
	}
	return n
}

// ping sends a ping with ref and waits for the pong carrying it.
func (c *wsClient) ping(ref string) {
	c.t.Helper()
	from := c.mark()
	c.send(obj{"type": "ping", "ref": ref})
	c.waitFrom(from, "pong "+ref, func(f obj) bool { return f["type"] == "pong" && f["ref"] == ref })
}

// presence asks for userID's presence (presence.subscribe, answered at
// once) and returns its status.
func (c *wsClient) presence(userID string) string {
	c.t.Helper()
	from := c.mark()
	c.send(obj{"type": "presence.subscribe", "user_ids": []string{userID}})
	f := c.waitFrom(from, "presence of "+userID, func(f obj) bool { return f["type"] == "presence" && f["user_id"] == userID })
	return str(f, "status")
}

// waitClosed waits for the connection to end and returns the close code
// (1006 when the TCP connection just ended).
func (c *wsClient) waitClosed(within time.Duration) int {
	c.t.Helper()
	code := c.waitClosedOrOpen(within)
	if code == 0 {
		c.t.Fatalf("%s: connection still open after %s", c.name, within)
	}
	return code
}

// waitClosedOrOpen is waitClosed answering 0 when the connection is still
// open after within.
func (c *wsClient) waitClosedOrOpen(within time.Duration) int {
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	code, err := c.ws.WaitClosed(ctx)
	if err != nil {
		return 0
	}
	return code
}

// syncedOrClosed waits for a synced frame or the end of the connection;
// code is 0 when synced came.
func (c *wsClient) syncedOrClosed() (code int) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	_, _, err := c.ws.Wait(ctx, 0, testnode.IsType("synced"))
	switch {
	case err == nil:
		return 0
	case errors.Is(err, testnode.ErrClosed):
		code, _ := c.ws.CloseCode()
		return code
	}
	c.t.Fatalf("%s: neither synced nor closed after %s", c.name, wait)
	return 0
}

// catchUp connects as d from cursor and returns the durable events up to
// synced. A connection closed with 4029 (too slow to read) is resumed
// from its last event's cursor, as the contract tells clients to do;
// cutoffs counts those.
func (s *server) catchUp(d device, cursor string) (evs []obj, cutoffs int) {
	s.t.Helper()
	for {
		c := s.dial(d.access, cursor)
		c.name = d.label() + " catching up"
		code := c.syncedOrClosed()
		for _, f := range c.snapshot() {
			if f["type"] == "synced" {
				break
			}
			if durable(f) {
				evs = append(evs, f)
				cursor = str(f, "cursor")
			}
		}
		c.close()
		switch {
		case code == 0:
			return evs, cutoffs
		case code != 4029:
			s.t.Fatalf("%s: closed with %d while catching up", c.name, code)
		case cutoffs > 200:
			s.t.Fatalf("%s: cut off 200 times while catching up", c.name)
		}
		cutoffs++
	}
}

func (c *wsClient) close() { _ = c.ws.Close() }

func (c *wsClient) dump() string {
	frames := c.ws.Frames(0)
	var b strings.Builder
	start := max(0, len(frames)-30)
	if start > 0 {
		fmt.Fprintf(&b, "(%d earlier) ", start)
	}
	for _, f := range frames[start:] {
		r := f.Raw
		if len(r) > 300 {
			r = append(r[:300:300], "..."...)
		}
		b.Write(r)
		b.WriteByte(' ')
	}
	if code, text := c.ws.CloseCode(); code != 0 {
		fmt.Fprintf(&b, "(closed %d %q)", code, text)
	}
	return b.String()
}

func isType(typ string) func(obj) bool { return func(f obj) bool { return f["type"] == typ } }

// isMessageIn matches message events of one conversation.
func isMessageIn(conv string) func(obj) bool {
	return func(f obj) bool { return f["type"] == "message" && f["conversation_id"] == conv }
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after %s", what, wait)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
