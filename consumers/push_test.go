package consumers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/natter-chat/natter/natsnode/natstest"
	"github.com/natter-chat/natter/push"
	"github.com/natter-chat/natter/push/gorush"
	"github.com/natter-chat/natter/push/gorush/gorushtest"
	"github.com/natter-chat/natter/schema"
	"github.com/natter-chat/natter/store"
	"github.com/natter-chat/natter/store/sqlite"
	"github.com/natter-chat/natter/streams"
)

// pushRig is the push worker over a real embedded NATS server and a real
// SQLite store, sending to a local gorush stand-in. Message events are
// published into INBOX as fanout publishes them.
type pushRig struct {
	t      *testing.T
	js     jetstream.JetStream
	db     *sqlite.DB
	gorush *gorushtest.Server
	online sync.Map // user id -> true
	sender push.Sender
	opts   PushOptions
	stop   func()
	seq    atomic.Int64
}

func (r *pushRig) Online(_ context.Context, userID string) (bool, error) {
	_, ok := r.online.Load(userID)
	return ok, nil
}

func newPushRig(t *testing.T, opts PushOptions) *pushRig {
	t.Helper()
	if opts.RetryDelay == 0 {
		opts.RetryDelay = 100 * time.Millisecond // retries within the tests' deadlines
	}
	_, js := natstest.Start(t).Connect()
	ctx := context.Background()
	setup := streams.Setup{
		Limits:   streams.Limits{Replicas: 1, ConvMaxAge: time.Hour, InboxMaxAge: time.Hour, MaxBytes: -1, DuplicateWindow: time.Minute},
		Tuning:   streams.ConsumerTuning{MaxAckPending: 1000, MaxDeliver: 20, AckWait: 5 * time.Second},
		TokenTTL: time.Hour,
	}
	if err := streams.Ensure(ctx, js, setup); err != nil {
		t.Fatal(err)
	}
	if err := streams.EnsurePush(ctx, js, setup); err != nil {
		t.Fatal(err)
	}
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "natter.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	g, err := gorushtest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	c, err := gorush.New(g.URL(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if opts.MaxDeliver == 0 {
		opts.MaxDeliver = 20
	}
	opts.ResetOnStart = true
	r := &pushRig{t: t, js: js, db: db, gorush: g, sender: push.ByPlatform{IOS: c, Android: c}, opts: opts}
	t.Cleanup(func() {
		if r.stop != nil {
			r.stop()
		}
		if err := g.Bad(); err != nil {
			t.Errorf("gorush would have refused natter's requests: %v", err)
		}
	})
	return r
}

// start runs a worker until stop (a restart is stop, then start).
func (r *pushRig) start() {
	r.t.Helper()
	w := NewPush(r.js, r.db, r, r.sender, r.opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := w.Run(ctx); err != nil {
			r.t.Errorf("push worker: %v", err)
		}
	}()
	r.stop = func() { cancel(); <-done; r.stop = nil }
}

// user creates a user with devices, each registered with a token of
// the given platform ("" for a device without push).
func (r *pushRig) user(name string, platforms ...string) string {
	r.t.Helper()
	ctx := context.Background()
	id := "u-" + name
	if err := r.db.CreateUser(ctx, store.User{ID: id, Username: name, PasswordHash: "x", CreatedAt: 1}); err != nil {
		r.t.Fatal(err)
	}
	for i, p := range platforms {
		dev := fmt.Sprintf("d-%s-%d", name, i)
		if err := r.db.CreateDevice(ctx, store.Device{ID: dev, UserID: id, CreatedAt: int64(i + 1)}, "h-"+dev); err != nil {
			r.t.Fatal(err)
		}
		if p == "" {
			continue
		}
		if err := r.db.SetPushToken(ctx, store.PushToken{DeviceID: dev, UserID: id, Platform: p, Token: "tok-" + dev, UpdatedAt: 1}); err != nil {
			r.t.Fatal(err)
		}
	}
	return id
}

func (r *pushRig) direct(a, b string) string {
	r.t.Helper()
	conv := "c-" + a + "-" + b
	if err := r.db.EnsureDirect(context.Background(), conv, a, b, 1); err != nil {
		r.t.Fatal(err)
	}
	return conv
}

// send publishes message seq of conv from sender to recipient as fanout
// does: one event in each participant's inbox. It returns the message id
// and the recipient's cursor.
func (r *pushRig) send(conv, sender, recipient, content string, serverTS time.Time) (string, uint64) {
	r.t.Helper()
	seq := r.seq.Add(1)
	msg := schema.Message{MessageID: conv + "-" + strconv.FormatInt(seq, 10), ConversationID: conv, Seq: seq, SenderID: sender,
		RecipientID: recipient, MessageType: store.ConversationDirect, Content: content, ClientMessageID: "cm" + strconv.FormatInt(seq, 10),
		ServerTS: serverTS.UnixMilli()}
	data, _ := json.Marshal(schema.MessageEvent{Type: schema.TypeMessage, Message: msg})
	var cursor uint64
	for _, u := range []string{sender, recipient} {
		ack, err := r.js.Publish(context.Background(), streams.InboxSubject(u, streams.InboxMessages), data)
		if err != nil {
			r.t.Fatal(err)
		}
		if u == recipient {
			cursor = ack.Sequence
		}
	}
	return msg.MessageID, cursor
}

// waitPushes waits until n notifications were accepted and returns them.
func (r *pushRig) waitPushes(n int) []gorushtest.Notification {
	r.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := r.gorush.Notifications()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("%d pushes after 20s, want %d: %+v", len(got), n, got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// eventually waits up to 20 s for cond.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not after 20s: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func messageIDs(ns []gorushtest.Notification) []string {
	var out []string
	for _, n := range ns {
		out = append(out, n.Data[push.DataMessageID])
	}
	return out
}

func TestPushOnePerDeviceWithEveryGorushField(t *testing.T) {
	r := newPushRig(t, PushOptions{})
	alice := r.user("alice", store.PlatformIOS) // the sender: never pushed her own message
	bob := r.user("bob", store.PlatformIOS, store.PlatformAndroid, "")
	conv := r.direct(alice, bob)
	r.start()
	id, cursor := r.send(conv, alice, bob, "hi bob", time.Now())
	r.waitPushes(2)
	// Sentinel: a later message in another conversation, so that anything
	// else the first one caused would have come before it.
	carol := r.user("carol", store.PlatformAndroid)
	r.send(r.direct(bob, carol), bob, carol, "sentinel", time.Now())
	got := r.waitPushes(3)
	if len(got) != 3 || got[2].Message != "sentinel" {
		t.Fatalf("pushes %+v, want bob's two devices then carol's", got)
	}
	byToken := map[string]gorushtest.Notification{}
	for _, n := range got[:2] {
		byToken[n.Tokens[0]] = n
	}
	for token, platform := range map[string]int{"tok-d-bob-0": gorush.PlatformIOS, "tok-d-bob-1": gorush.PlatformAndroid} {
		n, ok := byToken[token]
		if !ok {
			t.Fatalf("no push to %s: %+v", token, got)
		}
		dev := token[len("tok-"):]
		checks := []struct {
			field     string
			got, want any
		}{
			{"tokens", len(n.Tokens), 1},
			{"platform", n.Platform, platform},
			{"title", n.Title, "alice"},
			{"message", n.Message, "hi bob"},
			{"badge", n.Badge != nil && *n.Badge == 1, true},
			{"thread-id", n.ThreadID, conv},
			{"collapse_id", n.CollapseID, conv},
			{"notif_id", n.ID, id + ":" + dev},
			{"priority", n.Priority, "high"},
			{"data.conversation_id", n.Data["conversation_id"], conv},
			{"data.message_id", n.Data["message_id"], id},
			{"data.cursor", n.Data["cursor"], strconv.FormatUint(cursor, 10)},
		}
		for _, c := range checks {
			if c.got != c.want {
				t.Errorf("%s: %s = %v, want %v", token, c.field, c.got, c.want)
			}
		}
	}
}

func TestPushRules(t *testing.T) {
	r := newPushRig(t, PushOptions{Collapse: 10 * time.Second})
	alice := r.user("alice", store.PlatformIOS)
	bob := r.user("bob", store.PlatformIOS)
	carol := r.user("carol", store.PlatformAndroid)
	dave := r.user("dave", store.PlatformAndroid)
	ab, ac, ad := r.direct(alice, bob), r.direct(alice, carol), r.direct(alice, dave)
	ctx := context.Background()
	r.start()
	now := time.Now()
	var want []string
	expect := func(id string, _ uint64) { want = append(want, id) }
	none := func(id string, _ uint64) {}

	// Online: none. Bob's later message (offline again) is pushed.
	r.online.Store(bob, true)
	none(r.send(ab, alice, bob, "while online", now))
	expect(r.send(ac, alice, carol, "carol 1", now))
	r.waitPushes(len(want))
	r.online.Delete(bob)

	// Muted: none; a mute that ended: pushed.
	if err := r.db.SetMute(ctx, dave, ad, now.Add(time.Hour).UnixMilli()); err != nil {
		t.Fatal(err)
	}
	none(r.send(ad, alice, dave, "muted", now))
	expect(r.send(ab, alice, bob, "bob 1", now))
	r.waitPushes(len(want))
	if err := r.db.SetMute(ctx, dave, ad, now.Add(-time.Minute).UnixMilli()); err != nil {
		t.Fatal(err)
	}
	expect(r.send(ad, alice, dave, "mute over", now))
	r.waitPushes(len(want))

	// Quiet hours around the message's time in carol's zone: none.
	loc, _ := time.LoadLocation("Asia/Tokyo")
	lt := now.In(loc)
	start, end := lt.Add(-time.Hour).Format("15:04"), lt.Add(time.Hour).Format("15:04")
	if err := r.db.SetQuietHours(ctx, carol, store.QuietHours{Start: start, End: end, TZ: "Asia/Tokyo"}); err != nil {
		t.Fatal(err)
	}
	none(r.send(ac, alice, carol, "quiet", now.Add(20*time.Second)))
	expect(r.send(ab, alice, bob, "bob 2", now.Add(20*time.Second)))
	r.waitPushes(len(want))
	if err := r.db.SetQuietHours(ctx, carol, store.QuietHours{}); err != nil {
		t.Fatal(err)
	}

	// The sender's own messages: bob writes to alice, only alice is pushed.
	expect(r.send(ab, bob, alice, "from bob", now))
	r.waitPushes(len(want))

	// A burst in one conversation: the first is pushed, the rest within
	// the interval are not; one after the interval is.
	t0 := now.Add(time.Minute)
	expect(r.send(ad, alice, dave, "burst 1", t0))
	none(r.send(ad, alice, dave, "burst 2", t0.Add(time.Second)))
	none(r.send(ad, alice, dave, "burst 3", t0.Add(9*time.Second)))
	expect(r.send(ad, alice, dave, "after the interval", t0.Add(11*time.Second)))
	// Too old to be worth a push.
	none(r.send(ab, alice, bob, "ancient", now.Add(-2*time.Hour)))
	expect(r.send(ac, alice, carol, "sentinel", now.Add(2*time.Minute)))
	got := r.waitPushes(len(want))
	if ids := messageIDs(got); !slices.Equal(ids, want) {
		var texts []string
		for _, n := range got {
			texts = append(texts, n.Tokens[0]+":"+n.Message)
		}
		t.Fatalf("pushed %q\nwant    %q\n(%q)", ids, want, texts)
	}
}

// gorush down (its port closed), the worker restarted meanwhile, gorush
// up again: each device gets its push late, once.
func TestPushGorushDownThenUpDeliversOnceAcrossRestart(t *testing.T) {
	r := newPushRig(t, PushOptions{})
	alice := r.user("alice")
	bob := r.user("bob", store.PlatformIOS, store.PlatformAndroid)
	conv := r.direct(alice, bob)
	r.start()
	r.gorush.Down()
	id, _ := r.send(conv, alice, bob, "while gorush is down", time.Now())
	// Wait until the worker has tried and failed at least twice.
	cons, err := r.js.Consumer(context.Background(), streams.StreamInbox, streams.ConsumerPush)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		info, err := cons.Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if info.NumRedelivered > 0 || info.Delivered.Consumer >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the worker did not retry: %+v", info)
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.stop()
	r.start()
	if err := r.gorush.Up(); err != nil {
		t.Fatal(err)
	}
	r.waitPushes(2)
	// Then a refusal (503) for a second message, a restart, acceptance.
	r.gorush.Refuse(503)
	before := r.gorush.Requests()
	id2, _ := r.send(conv, alice, bob, "while gorush refuses", time.Now().Add(time.Minute))
	eventually(t, "two refused requests", func() bool { return r.gorush.Requests() >= before+2 })
	r.stop()
	r.start()
	r.gorush.Refuse(0)
	r.waitPushes(4)
	// A sentinel in another conversation: nothing else came before it.
	carol := r.user("carol", store.PlatformIOS)
	r.send(r.direct(alice, carol), alice, carol, "sentinel", time.Now())
	got := r.waitPushes(5)
	want := []string{id, id, id2, id2}
	if ids := messageIDs(got); !slices.Equal(ids[:4], want) || len(got) != 5 {
		t.Fatalf("pushed %q, want %q then the sentinel", ids, want)
	}
	seen := map[string]bool{}
	for _, n := range got {
		if seen[n.ID] {
			t.Fatalf("notif_id %s pushed twice: %+v", n.ID, got)
		}
		seen[n.ID] = true
	}
}

// A provider that keeps failing: the event is retried with back-off, then
// dead-lettered, and nothing is pushed.
func TestPushDeadLettersAfterMaxDeliver(t *testing.T) {
	r := newPushRig(t, PushOptions{Options: Options{MaxDeliver: 3}})
	alice := r.user("alice")
	bob := r.user("bob", store.PlatformIOS)
	r.start()
	r.gorush.Refuse(500)
	id, _ := r.send(r.direct(alice, bob), alice, bob, "never delivered", time.Now())
	dlq, err := r.js.Stream(context.Background(), streams.StreamDeadLetter)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		m, err := dlq.GetLastMsgForSubject(context.Background(), streams.DeadLetterSubject(streams.ConsumerPush))
		if err == nil {
			var ev schema.MessageEvent
			_ = json.Unmarshal(m.Data, &ev)
			if ev.MessageID != id || m.Header.Get(streams.HeaderError) == "" {
				t.Fatalf("dead letter %s %v", m.Data, m.Header)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not dead-lettered after 20s: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := r.gorush.Requests(); n != 3 {
		t.Errorf("%d requests, want 3 (max deliver)", n)
	}
	if got := r.gorush.Notifications(); len(got) != 0 {
		t.Errorf("pushed %+v", got)
	}
}

// flaky fails Android notifications until told otherwise, reports one
// token dead, and sends the rest through next.
type flaky struct {
	next      push.Sender
	failing   atomic.Bool
	deadToken string
	calls     atomic.Int32
}

func (f *flaky) Send(ctx context.Context, ns []push.Notification) []push.Result {
	f.calls.Add(1)
	out := make([]push.Result, len(ns))
	var pass []int
	for i, n := range ns {
		switch {
		case n.Token == f.deadToken:
			out[i] = push.Result{Err: push.ErrDeadToken, Dead: true}
		case n.Platform == store.PlatformAndroid && f.failing.Load():
			out[i] = push.Result{Err: errors.New("injected failure")}
		default:
			pass = append(pass, i)
		}
	}
	var part []push.Notification
	for _, i := range pass {
		part = append(part, ns[i])
	}
	if len(part) > 0 {
		for j, res := range f.next.Send(ctx, part) {
			out[pass[j]] = res
		}
	}
	return out
}

// One device's push failing does not resend the others' on retry; a
// token the provider calls dead is removed from the store and not retried.
func TestPushRetriesOnlyWhatFailedAndDropsDeadTokens(t *testing.T) {
	r := newPushRig(t, PushOptions{})
	f := &flaky{next: r.sender, deadToken: "tok-d-bob-2"}
	f.failing.Store(true)
	r.sender = f
	alice := r.user("alice")
	bob := r.user("bob", store.PlatformIOS, store.PlatformAndroid, store.PlatformIOS)
	r.start()
	id, _ := r.send(r.direct(alice, bob), alice, bob, "partly", time.Now())
	r.waitPushes(1)
	eventually(t, "two retries with Android failing", func() bool { return f.calls.Load() >= 3 })
	f.failing.Store(false)
	r.waitPushes(2)
	carol := r.user("carol", store.PlatformIOS)
	r.send(r.direct(alice, carol), alice, carol, "sentinel", time.Now())
	got := r.waitPushes(3)
	var tokens []string
	for _, n := range got {
		tokens = append(tokens, n.Tokens[0])
	}
	if want := []string{"tok-d-bob-0", "tok-d-bob-1", "tok-d-carol-0"}; !slices.Equal(tokens, want) || got[1].Data["message_id"] != id {
		t.Fatalf("pushed to %q, want %q", tokens, want)
	}
	ts, err := r.db.PushTokens(context.Background(), bob)
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != 2 || ts[0].Token != "tok-d-bob-0" || ts[1].Token != "tok-d-bob-1" {
		t.Fatalf("bob's tokens after a dead one: %+v", ts)
	}
}
