// Package e2e tests natter as its clients see it: the real binary, started
// as a process on a random port with its own data directory, driven over
// real HTTP and WebSocket connections, killed with SIGKILL and restarted.
// Every test checks a promise of shared/protocol.md (the client contract).
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// wait is the deadline of every poll: generous, because the suite runs
// under -race on a loaded two-core machine.
const wait = 20 * time.Second

const password = "password123"

// natterBin is the binary every test runs, built once by TestMain.
var natterBin string

// servers bounds how many natter processes run at once.
var servers = make(chan struct{}, 4)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "natter-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	out, err := exec.Command("go", "env", "GOMOD").Output()
	gomod := strings.TrimSpace(string(out))
	if err != nil || gomod == "" || gomod == os.DevNull {
		fmt.Fprintln(os.Stderr, "e2e: cannot find the module root:", err)
		return 1
	}
	natterBin = filepath.Join(dir, "natter")
	build := exec.Command("go", "build", "-o", natterBin, "./cmd/natter")
	build.Dir = filepath.Dir(gomod)
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: go build ./cmd/natter: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// server is one natter process and the data directory it keeps across
// restarts.
type server struct {
	t     *testing.T
	addr  string // host:port
	base  string // http://host:port
	data  string
	flags []string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has been waited for
	state  *os.ProcessState
	logs   *lockedBuffer
	slot   bool
}

// start runs `natter serve` on a free port with a fresh data directory
// and waits until /healthz answers. Rate limits are off unless flags set
// --rate-limit. The server is killed when the test ends; its log is
// printed if the test failed. At most cap(servers) run at once.
func start(t *testing.T, flags ...string) *server {
	t.Helper()
	servers <- struct{}{}
	s := &server{t: t, data: t.TempDir(), flags: flags, logs: &lockedBuffer{}, slot: true}
	s.addr = freeAddr(t)
	s.base = "http://" + s.addr
	t.Cleanup(func() {
		s.stopNow()
		s.mu.Lock()
		if s.slot {
			s.slot = false
			<-servers
		}
		s.mu.Unlock()
		if t.Failed() {
			t.Logf("natter log (%s):\n%s", s.addr, s.logs.String())
		}
	})
	s.launch()
	return s
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// launch starts the process on s.addr and s.data and waits for /healthz.
func (s *server) launch() {
	t := s.t
	t.Helper()
	args := append([]string{"serve", "--http", s.addr, "--data", s.data}, s.flags...)
	if !hasFlag(s.flags, "--rate-limit") {
		args = append(args, "--rate-limit", "off")
	}
	cmd := exec.Command(natterBin, args...)
	fmt.Fprintf(s.logs, "--- natter %s\n", strings.Join(args, " "))
	cmd.Stdout, cmd.Stderr = s.logs, s.logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start natter: %v", err)
	}
	exited := make(chan struct{})
	s.mu.Lock()
	s.cmd, s.exited, s.state = cmd, exited, nil
	s.mu.Unlock()
	go func() {
		_ = cmd.Wait()
		s.mu.Lock()
		s.state = cmd.ProcessState
		s.mu.Unlock()
		close(exited)
	}()
	deadline := time.Now().Add(wait)
	for {
		select {
		case <-exited:
			t.Fatalf("natter exited before it was healthy: %v\n%s", s.exitState(), s.logs.String())
		default:
		}
		resp, err := healthClient.Get(s.base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("natter not healthy after %s (last error %v)\n%s", wait, err, s.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitLog waits until the server's log holds msg at least n times (over
// all its starts).
func (s *server) waitLog(msg string, n int) {
	s.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for strings.Count(s.logs.String(), msg) < n {
		if time.Now().After(deadline) {
			s.t.Fatalf("natter did not log %q %d times in 30 s:\n%s", msg, n, s.logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func hasFlag(flags []string, name string) bool {
	for _, f := range flags {
		if f == name || strings.HasPrefix(f, name+"=") {
			return true
		}
	}
	return false
}

func (s *server) exitState() *os.ProcessState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state
}

// pid is the running process's id.
func (s *server) pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd.Process.Pid
}

// kill9 kills the process with SIGKILL and waits until it is gone.
func (s *server) kill9() {
	s.t.Helper()
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.mu.Unlock()
	_ = cmd.Process.Kill()
	select {
	case <-exited:
	case <-time.After(wait):
		s.t.Fatal("natter did not die after SIGKILL")
	}
}

// signal sends sig and returns a channel closed when the process exits.
func (s *server) signal(sig os.Signal) <-chan struct{} {
	s.t.Helper()
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.mu.Unlock()
	if err := cmd.Process.Signal(sig); err != nil {
		s.t.Fatalf("signal natter: %v", err)
	}
	return exited
}

// restart starts the process again on the same address and data
// directory, after kill9 or a signal that ended it.
func (s *server) restart() {
	s.t.Helper()
	select {
	case <-s.exited:
	default:
		s.t.Fatal("restart: natter is still running")
	}
	s.launch()
}

// stopNow kills the process if it runs; used by cleanups.
func (s *server) stopNow() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-exited:
		return
	default:
	}
	_ = cmd.Process.Kill()
	<-exited
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

// vmRSS reads VmRSS (KiB) from /proc/PID/status.
func vmRSS(pid int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) >= 2 && f[0] == "VmRSS:" {
			return strconv.Atoi(f[1])
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
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

// httpClient bounds every request; long-polls wait up to 60 s.
var httpClient = &http.Client{Timeout: 90 * time.Second}

var healthClient = &http.Client{Timeout: 2 * time.Second}

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
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return resp{}, err
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, s.base+path, rd)
	if err != nil {
		return resp{}, err
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := httpClient.Do(req)
	if err != nil {
		return resp{}, err
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		return resp{}, err
	}
	r := resp{status: res.StatusCode, header: res.Header, raw: raw}
	_ = json.Unmarshal(raw, &r.body)
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
func (s *server) history(d device, conv string) []obj {
	s.t.Helper()
	var all []obj
	cursor := ""
	for {
		q := "?limit=100"
		if cursor != "" {
			q += "&cursor=" + url.QueryEscape(cursor)
		}
		b := s.must(http.StatusOK, "GET", "/v1/conversations/"+url.PathEscape(conv)+"/messages"+q, d.access, nil)
		all = append(all, objs(b["messages"])...)
		next, ok := b["next_cursor"].(string)
		if !ok {
			return all
		}
		if next == "" || len(all) > 100000 {
			s.t.Fatalf("history: bad next_cursor %v", b["next_cursor"])
		}
		cursor = next
	}
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

// at is xs[i], or an empty object when xs is shorter (so a wrong answer
// fails an assertion instead of panicking the whole suite).
func at(xs []obj, i int) obj {
	if i < 0 || i >= len(xs) {
		return obj{}
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

// wsClient is one WebSocket connection. A reader goroutine appends every
// frame to a log; waitFor and friends look through it without consuming,
// so several waits can match the same frames.
type wsClient struct {
	t    *testing.T
	conn *websocket.Conn
	name string

	wmu sync.Mutex // serializes writes

	mu       sync.Mutex
	frames   []obj
	raws     [][]byte
	changed  chan struct{} // closed and replaced on every new frame or close
	closed   bool
	closeErr error
}

// dial opens a WebSocket with token and, when not empty, cursor. It fails
// the test if the upgrade is refused.
func (s *server) dial(token, cursor string) *wsClient {
	s.t.Helper()
	c, res, err := s.tryDial(token, cursor, nil)
	if err != nil {
		body := ""
		if res != nil {
			b, _ := io.ReadAll(res.Body)
			body = fmt.Sprintf(" (%d %s)", res.StatusCode, b)
		}
		s.t.Fatalf("dial: %v%s", err, body)
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

func (s *server) wsURL(token, cursor string) string {
	q := url.Values{}
	if token != "" {
		q.Set("access_token", token)
	}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	u := "ws://" + s.addr + "/v1/ws"
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	return u
}

// tryDial returns the handshake's error and response instead of failing.
func (s *server) tryDial(token, cursor string, header http.Header) (*wsClient, *http.Response, error) {
	return s.tryDialWith(websocket.Dialer{HandshakeTimeout: wait}, token, cursor, header)
}

// smallWindowDialer dials with a fixed 64 KiB TCP receive buffer: without
// it Linux grows the buffer of a client that does not read to tens of
// MB, which hides a slow reader from the server for that long.
func smallWindowDialer() websocket.Dialer {
	return websocket.Dialer{
		HandshakeTimeout: wait,
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			if err := c.(*net.TCPConn).SetReadBuffer(64 << 10); err != nil {
				c.Close()
				return nil, err
			}
			return c, nil
		},
	}
}

func (s *server) tryDialWith(d websocket.Dialer, token, cursor string, header http.Header) (*wsClient, *http.Response, error) {
	conn, res, err := d.Dial(s.wsURL(token, cursor), header)
	if err != nil {
		return nil, res, err
	}
	c := &wsClient{t: s.t, conn: conn, changed: make(chan struct{})}
	s.t.Cleanup(func() { c.conn.Close() })
	go c.readLoop()
	return c, res, nil
}

func (c *wsClient) readLoop() {
	for {
		_, raw, err := c.conn.ReadMessage()
		c.mu.Lock()
		if err != nil {
			c.closed, c.closeErr = true, err
		} else {
			var f obj
			if jerr := json.Unmarshal(raw, &f); jerr != nil {
				f = obj{"type": "<not json>", "raw": string(raw)}
			}
			c.frames = append(c.frames, f)
			c.raws = append(c.raws, raw)
		}
		close(c.changed)
		c.changed = make(chan struct{})
		c.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// send writes one frame (JSON of v, or v itself when it is []byte).
func (c *wsClient) send(v any) {
	c.t.Helper()
	if err := c.trySend(v); err != nil {
		c.t.Fatalf("ws send: %v", err)
	}
}

func (c *wsClient) trySend(v any) error {
	b, ok := v.([]byte)
	if !ok {
		var err error
		if b, err = json.Marshal(v); err != nil {
			return err
		}
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.conn.SetWriteDeadline(time.Now().Add(wait))
	return c.conn.WriteMessage(websocket.TextMessage, b)
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

// snapshot returns the frames received so far.
func (c *wsClient) snapshot() []obj {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]obj(nil), c.frames...)
}

// mark is the number of frames received so far: waitFrom(mark(), ...)
// looks only at frames that arrive later.
func (c *wsClient) mark() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.frames)
}

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

func (c *wsClient) waitNFrom(from int, what string, n int, match func(obj) bool) []obj {
	c.t.Helper()
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		var got []obj
		for _, f := range c.frames[from:] {
			if match(f) {
				got = append(got, f)
			}
		}
		closed, closeErr, changed := c.closed, c.closeErr, c.changed
		c.mu.Unlock()
		if len(got) >= n {
			return got
		}
		if closed {
			c.t.Fatalf("%s: waiting for %s (%d of %d): connection closed: %v; frames: %s", c.name, what, len(got), n, closeErr, c.dump())
		}
		select {
		case <-changed:
		case <-deadline.C:
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
// (websocket.CloseAbnormalClosure when the TCP connection just ended).
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
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		closed, err, changed := c.closed, c.closeErr, c.changed
		c.mu.Unlock()
		if closed {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				return ce.Code
			}
			return websocket.CloseAbnormalClosure
		}
		select {
		case <-changed:
		case <-deadline.C:
			return 0
		}
	}
}

// syncedOrClosed waits for a synced frame or the end of the connection;
// code is 0 when synced came.
func (c *wsClient) syncedOrClosed() (code int) {
	c.t.Helper()
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		synced := slices.ContainsFunc(c.frames, isType("synced"))
		closed, changed := c.closed, c.changed
		c.mu.Unlock()
		if synced {
			return 0
		}
		if closed {
			return c.waitClosed(0)
		}
		select {
		case <-changed:
		case <-deadline.C:
			c.t.Fatalf("%s: neither synced nor closed after %s", c.name, wait)
		}
	}
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

func (c *wsClient) close() { _ = c.conn.Close() }

func (c *wsClient) dump() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var b strings.Builder
	start := max(0, len(c.raws)-30)
	if start > 0 {
		fmt.Fprintf(&b, "(%d earlier) ", start)
	}
	for _, r := range c.raws[start:] {
		if len(r) > 300 {
			r = append(r[:300:300], "..."...)
		}
		b.Write(r)
		b.WriteByte(' ')
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
