package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/natter-chat/natter/chat"
	"github.com/natter-chat/natter/chat/auth"
	"github.com/natter-chat/natter/consumers"
	"github.com/natter-chat/natter/natsnode/natstest"
	"github.com/natter-chat/natter/store"
	"github.com/natter-chat/natter/store/sqlite"
	"github.com/natter-chat/natter/streams"
)

// testNode is one natter node in-process: a real embedded NATS server, a
// real SQLite store in t.TempDir(), chat, the consumers and the gateway
// behind a real HTTP server.
type testNode struct {
	t    *testing.T
	url  string
	core *chat.Core
	db   *faultyStore
	conv func() streamCounter
}

type streamCounter func(subject string) uint64

// faultyStore is the real SQLite store whose writes fail as on a full
// disk (store.ErrUnavailable) while full is set.
type faultyStore struct {
	*sqlite.DB
	full atomic.Bool
}

var errDiskFull = errors.New("disk full (injected)")

func (f *faultyStore) fail(what string) error {
	if f.full.Load() {
		return errors.Join(store.ErrUnavailable, errors.New(what), errDiskFull)
	}
	return nil
}

func (f *faultyStore) CreateUser(ctx context.Context, u store.User) error {
	if err := f.fail("create user"); err != nil {
		return err
	}
	return f.DB.CreateUser(ctx, u)
}

func (f *faultyStore) CreateDevice(ctx context.Context, d store.Device, h string) error {
	if err := f.fail("create device"); err != nil {
		return err
	}
	return f.DB.CreateDevice(ctx, d, h)
}

func (f *faultyStore) EnsureDirect(ctx context.Context, id, a, b string, at int64) error {
	if err := f.fail("ensure direct"); err != nil {
		return err
	}
	return f.DB.EnsureDirect(ctx, id, a, b, at)
}

type nodeOptions struct {
	gateway   Config
	chat      chat.Config
	holdCore  bool // do not run chat until the test calls start
	readyFail error
}

func startNode(t *testing.T, opts nodeOptions) (*testNode, func()) {
	t.Helper()
	srv := natstest.Start(t)
	nc, js := srv.Connect()
	ctx := context.Background()
	if err := streams.Ensure(ctx, js, streams.Setup{
		Limits:   streams.Limits{Replicas: 1, ConvMaxAge: time.Hour, InboxMaxAge: time.Hour, MaxBytes: -1, DuplicateWindow: time.Minute},
		Tuning:   streams.ConsumerTuning{MaxAckPending: 1000, MaxDeliver: 3, AckWait: 5 * time.Second},
		TokenTTL: time.Hour,
	}); err != nil {
		t.Fatal(err)
	}
	sdb, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "natter.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	db := &faultyStore{DB: sdb}
	key, err := auth.LoadOrCreateKey(filepath.Join(t.TempDir(), "token.key"))
	if err != nil {
		t.Fatal(err)
	}
	chatCfg := opts.chat
	chatCfg.RateLimit = chatCfg.RateLimit || opts.gateway.RateLimit
	core, err := chat.New(ctx, chatCfg, db, nc, auth.NewSigner(key, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	run := func(f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(runCtx); err != nil && runCtx.Err() == nil {
				t.Errorf("run: %v", err)
			}
		}()
	}
	for _, c := range []interface{ Run(context.Context) error }{
		consumers.NewPersist(js, db, consumers.Options{MaxDeliver: 3}),
		consumers.NewFanout(js, db, consumers.Options{MaxDeliver: 3}),
		consumers.NewReceipts(js, db, consumers.Options{MaxDeliver: 3}),
	} {
		run(c.Run)
	}
	cfg := opts.gateway
	if opts.readyFail != nil {
		cfg.ReadyChecks = append(cfg.ReadyChecks, ReadyCheck{Name: "injected", Check: func(context.Context) error { return opts.readyFail }})
	}
	gw := New(cfg, core)
	run(gw.Run)
	hs := httptest.NewServer(gw.Handler())
	start := func() { run(core.Run) }
	if !opts.holdCore {
		start()
	}
	conv, err := js.Stream(ctx, streams.StreamConv)
	if err != nil {
		t.Fatal(err)
	}
	n := &testNode{t: t, url: hs.URL, core: core, db: db, conv: func() streamCounter {
		return func(subject string) uint64 {
			info, err := conv.Info(ctx, jetstream.WithSubjectFilter(subject))
			if err != nil {
				t.Fatal(err)
			}
			return info.State.Subjects[subject]
		}
	}}
	t.Cleanup(func() {
		gw.Close()
		hs.Close()
		cancel()
		wg.Wait()
		_ = sdb.Close()
	})
	return n, start
}

type answer2 struct {
	status int
	header http.Header
	body   map[string]any
	raw    []byte
}

func (n *testNode) do(method, path, token string, body any) answer2 {
	n.t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, n.url+path, r)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		n.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := answer2{status: resp.StatusCode, header: resp.Header, raw: raw}
	_ = json.Unmarshal(raw, &a.body)
	return a
}

func (a answer2) code() string {
	e, _ := a.body["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

func (a answer2) message() string {
	e, _ := a.body["error"].(map[string]any)
	m, _ := e["message"].(string)
	return m
}

type user struct {
	id, name, token, device string
}

func (n *testNode) user(name string) user {
	n.t.Helper()
	r := n.do("POST", "/v1/auth/register", "", map[string]string{"username": name, "password": "password123"})
	if r.status != 201 {
		n.t.Fatalf("register %s: %d %s", name, r.status, r.raw)
	}
	l := n.do("POST", "/v1/auth/login", "", map[string]string{"username": name, "password": "password123"})
	if l.status != 200 {
		n.t.Fatalf("login %s: %d %s", name, l.status, l.raw)
	}
	return user{id: l.body["user_id"].(string), name: name, token: l.body["access_token"].(string), device: l.body["device_id"].(string)}
}

func (n *testNode) send(from user, to user, cmid string) answer2 {
	n.t.Helper()
	return n.do("POST", "/v1/messages", from.token, map[string]any{"client_message_id": cmid, "recipient_id": to.id,
		"message_type": "user", "content": "hello " + cmid, "timestamp": 1})
}

// ws is a real WebSocket client of the test node.
type ws struct {
	t      *testing.T
	conn   *websocket.Conn
	frames chan map[string]any
}

func (n *testNode) dial(u user) *ws {
	n.t.Helper()
	url := "ws" + strings.TrimPrefix(n.url, "http") + "/v1/ws?access_token=" + u.token
	conn, resp, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		n.t.Fatalf("dial: %v", err)
	}
	resp.Body.Close()
	w := &ws{t: n.t, conn: conn, frames: make(chan map[string]any, 256)}
	go func() {
		defer close(w.frames)
		for {
			_, b, err := conn.ReadMessage()
			if err != nil {
				return
			}
			var m map[string]any
			_ = json.Unmarshal(b, &m)
			w.frames <- m
		}
	}()
	n.t.Cleanup(func() { _ = conn.Close() })
	w.await(func(m map[string]any) bool { return m["type"] == "synced" })
	return w
}

func (w *ws) write(v any) {
	w.t.Helper()
	if err := w.conn.WriteJSON(v); err != nil {
		w.t.Fatal(err)
	}
}

// await returns the first frame that matches, failing after 20 s.
func (w *ws) await(match func(map[string]any) bool) map[string]any {
	w.t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case m, ok := <-w.frames:
			if !ok {
				w.t.Fatal("connection closed while waiting")
			}
			if match(m) {
				return m
			}
		case <-deadline:
			w.t.Fatal("timed out waiting for a frame")
		}
	}
}

func isType(t string) func(map[string]any) bool {
	return func(m map[string]any) bool { return m["type"] == t }
}

// eventually polls cond for up to 20 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
