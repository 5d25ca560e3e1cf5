package consumers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/natter-chat/natter/internal/syncbuf"
	"log/slog"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/natter-chat/natter/natsnode/natstest"
	"github.com/natter-chat/natter/schema"
	"github.com/natter-chat/natter/store"
	"github.com/natter-chat/natter/store/sqlite"
	"github.com/natter-chat/natter/streams"
)

// downStore is the real SQLite store whose SaveMessages fails as a full
// disk would while down is set.
type downStore struct {
	*sqlite.DB
	down  atomic.Bool
	tries atomic.Int32
}

func (d *downStore) SaveMessages(ctx context.Context, msgs []store.Message) error {
	if d.down.Load() {
		d.tries.Add(1)
		return fmt.Errorf("save messages: %w: disk full (injected)", store.ErrUnavailable)
	}
	return d.DB.SaveMessages(ctx, msgs)
}

// conversation opens a store with alice, bob and their conversation.
func conversation(t *testing.T) (*sqlite.DB, string) {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "natter.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	for _, u := range []string{"alice", "bob"} {
		if err := db.CreateUser(ctx, store.User{ID: u, Username: u, PasswordHash: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	conv := schema.DirectConversationID("alice", "bob")
	if err := db.EnsureDirect(ctx, conv, "alice", "bob", 1); err != nil {
		t.Fatal(err)
	}
	return db, conv
}

// publishMessages publishes the messages of seqs from..to of conv.
func publishMessages(t *testing.T, js jetstream.JetStream, conv string, from, to int64) {
	t.Helper()
	for seq := from; seq <= to; seq++ {
		m := nats.NewMsg(streams.MsgSubject(conv))
		m.Data, _ = json.Marshal(schema.Message{MessageID: schema.MessageID(conv, seq), ConversationID: conv, Seq: seq,
			SenderID: "alice", RecipientID: "bob", MessageType: schema.MessageTypeUser,
			Content: fmt.Sprint("m", seq), ClientMessageID: fmt.Sprint("c", seq), ServerTS: seq})
		if _, err := js.PublishMsg(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
}

func runConsumer(t *testing.T, c interface{ Run(context.Context) error }) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("consumer: %v", err)
		}
	})
}

func deadLettered(t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	s, err := js.Stream(context.Background(), streams.StreamDeadLetter)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A store that is down for longer than MaxDeliver retries would last
// (a full disk) delays persistence; it must not dead-letter messages,
// which would leave them out of history for good.
func TestPersistWaitsOutAnUnavailableStore(t *testing.T) {
	js := startJetStream(t, time.Minute) // ack wait 1 s
	db, conv := conversation(t)
	st := &downStore{DB: db}
	st.down.Store(true)
	runConsumer(t, NewPersist(js, st, Options{MaxDeliver: 2}))
	publishMessages(t, js, conv, 1, 20)

	// Two failed tries, then more than two ack waits: by now MaxDeliver
	// (2) would be spent by nak-and-redeliver.
	waitFor(t, "persist to try the down store twice", func() bool { return st.tries.Load() >= 2 })
	time.Sleep(2500 * time.Millisecond)
	if n := deadLettered(t, js); n != 0 {
		t.Fatalf("%d messages dead-lettered while the store was down: they would never reach history", n)
	}
	st.down.Store(false)
	waitFor(t, "all 20 messages in the store", func() bool {
		seq, err := db.LastSeq(context.Background(), conv)
		return err == nil && seq == 20
	})
	for seq := int64(1); seq <= 20; seq++ {
		if _, err := db.Message(context.Background(), conv, seq); err != nil {
			t.Fatalf("message %d after the store came back: %v", seq, err)
		}
	}
	if n := deadLettered(t, js); n != 0 {
		t.Fatalf("%d messages dead-lettered", n)
	}
}

// Fanout whose inbox stream is gone (JetStream refusing writes) waits for
// it to come back and then delivers every event exactly once.
func TestFanoutWaitsOutAnUnavailableInbox(t *testing.T) {
	js := startJetStream(t, time.Minute)
	db, conv := conversation(t)
	runConsumer(t, NewFanout(js, db, Options{MaxDeliver: 2}))
	publishMessages(t, js, conv, 1, 1)
	for _, u := range []string{"alice", "bob"} {
		waitFor(t, "fanout running", func() bool { return len(inboxSources(t, js, streams.InboxSubject(u, streams.InboxMessages))) == 1 })
	}
	ctx := context.Background()
	if err := js.DeleteStream(ctx, streams.StreamInbox); err != nil {
		t.Fatal(err)
	}
	publishMessages(t, js, conv, 2, 11)
	time.Sleep(2500 * time.Millisecond) // > 2 ack waits: MaxDeliver 2 would be spent
	if n := deadLettered(t, js); n != 0 {
		t.Fatalf("%d messages dead-lettered while the inbox was unavailable: recipients would never get them", n)
	}
	ensureStreams(t, js, time.Minute) // the inbox is back
	for _, u := range []string{"alice", "bob"} {
		subj := streams.InboxSubject(u, streams.InboxMessages)
		waitFor(t, u+"'s 10 events", func() bool { return len(inboxSources(t, js, subj)) >= 10 })
		time.Sleep(200 * time.Millisecond) // a late duplicate would show up here
		got := inboxSources(t, js, subj)
		if len(got) != 10 {
			t.Fatalf("%s inbox sources = %v, want 10 events, each once", u, got)
		}
		for i := 1; i < len(got); i++ {
			if got[i] <= got[i-1] {
				t.Fatalf("%s inbox sources = %v, want strictly increasing", u, got)
			}
		}
	}
}

// A handler that blocks without an error leaves no other trace: the log
// says when a batch has been in hand for slowBatch, and when it is done.
func TestSlowBatchIsLogged(t *testing.T) {
	defer func(d time.Duration) { slowBatch = d }(slowBatch)
	slowBatch = 100 * time.Millisecond
	ctx := t.Context()
	srv := natstest.Start(t)
	_, js := srv.Connect()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateConsumer(ctx, "T", jetstream.ConsumerConfig{Durable: "c", AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "t.a", []byte("x")); err != nil {
		t.Fatal(err)
	}
	var logs syncbuf.Buffer
	r, err := newRunnerOn(ctx, js, "T", "c", Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	handled := make(chan struct{})
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- r.run(runCtx, func(context.Context, []jetstream.Msg) error {
			time.Sleep(400 * time.Millisecond)
			close(handled)
			return nil
		})
	}()
	<-handled
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "the slow batch is done") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	for _, want := range []string{`msg="a batch is still being handled"`, "first=1 last=1", `msg="the slow batch is done"`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s:\n%s", want, out)
		}
	}
}

// A consumer is opened again while JetStream does not answer (a restarted
// node in a cluster catching up), and not when it answers that the
// consumer is missing.
func TestOpenConsumerWaitsForJetStream(t *testing.T) {
	plain, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	plain.Start()
	t.Cleanup(plain.Shutdown)
	if !plain.ReadyForConnections(5 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	nc, err := nats.Connect(plain.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	noJS, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	var logs syncbuf.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	if _, err := openConsumer(ctx, noJS, "T", "c", log); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("without JetStream: %v, want the wait to end with the context", err)
	}
	if n := strings.Count(logs.String(), "opening the consumer again"); n < 2 {
		t.Errorf("opened again %d times, want at least 2:\n%s", n, logs.String())
	}

	srv := natstest.Start(t)
	_, js := srv.Connect()
	if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := openConsumer(t.Context(), js, "T", "missing", log); !errors.Is(err, jetstream.ErrConsumerNotFound) {
		t.Fatalf("missing consumer: %v, want ErrConsumerNotFound", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("a missing consumer took %v to report", d)
	}
}
