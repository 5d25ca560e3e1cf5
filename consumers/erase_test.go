package consumers

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/natter-chat/natter/natsnode/natstest"
	"github.com/natter-chat/natter/schema"
	"github.com/natter-chat/natter/store"
	"github.com/natter-chat/natter/store/sqlite"
	"github.com/natter-chat/natter/streams"
)

// Erase must wait for fanout: erasing while fanout has not yet written a
// message's events would let fanout write the content into INBOX after
// the erasure looked. With fanout held back the CONV record stays; once
// fanout runs, the record and every inbox copy go and the deleted events
// stay.
func TestEraseWaitsForFanoutThenErasesEveryCopy(t *testing.T) {
	srv := natstest.Start(t)
	nc, js := srv.Connect()
	ensureStreams(t, js, time.Minute)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "natter.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, u := range []string{"alice", "bob"} {
		if err := db.CreateUser(ctx, store.User{ID: u, Username: u, PasswordHash: "x", CreatedAt: 1}); err != nil {
			t.Fatal(err)
		}
	}
	conv := schema.DirectConversationID("alice", "bob")
	if err := db.EnsureDirect(ctx, conv, "alice", "bob", 1); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	run := func(c interface{ Run(context.Context) error }) {
		wg.Go(func() {
			if err := c.Run(ctx); err != nil && ctx.Err() == nil {
				t.Errorf("consumer: %v", err)
			}
		})
	}
	opts := Options{MaxDeliver: 3}
	run(NewPersist(js, db, opts))
	run(NewErase(nc, js, db, opts))

	cs, err := js.Stream(ctx, streams.StreamConv)
	if err != nil {
		t.Fatal(err)
	}
	rec, _, err := streams.NewSequencer(js, cs, db).Publish(ctx, streams.MessageRecord{ConversationID: conv, SenderID: "alice",
		RecipientID: "bob", MessageType: "user", Content: "secret", ClientMessageID: "c1", ServerTS: time.Now().UnixMilli()})
	if err != nil {
		t.Fatal(err)
	}
	msgSeq, err := cs.GetLastMsgForSubject(ctx, streams.MsgSubject(conv))
	if err != nil {
		t.Fatal(err)
	}
	wm := streams.NewWatermark(js, 5*time.Millisecond)
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	if err := wm.Wait(wctx, msgSeq.Sequence, streams.ConsumerPersist); err != nil {
		t.Fatal(err)
	}
	if err := streams.NewConvWriter(js).Deletion(ctx, streams.Deletion{ConversationID: conv, Seq: rec.Seq, MessageID: rec.MessageID,
		UserID: "alice", For: "everyone", TS: time.Now().UnixMilli()}); err != nil {
		t.Fatal(err)
	}
	// Erase has the deletion but fanout has not passed it: the record stays.
	eventuallyT(t, "erase to receive the deletion", func() bool {
		c, err := js.Consumer(ctx, streams.StreamConv, streams.ConsumerErase)
		return err == nil && c.CachedInfo().Delivered.Stream > msgSeq.Sequence
	})
	time.Sleep(eraseWait + 500*time.Millisecond) // one wait of erase's, and more
	if _, err := cs.GetMsg(ctx, msgSeq.Sequence); err != nil {
		t.Fatalf("CONV record erased before fanout wrote the message's events: %v", err)
	}

	run(NewFanout(js, db, opts))
	eventuallyT(t, "the CONV record to be erased", func() bool {
		_, err := cs.GetMsg(ctx, msgSeq.Sequence)
		return errors.Is(err, jetstream.ErrMsgNotFound)
	})
	inbox, err := js.Stream(ctx, streams.StreamInbox)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"alice", "bob"} {
		var kinds []string
		eventuallyT(t, u+"'s inbox to hold only the deleted event", func() bool {
			kinds = kinds[:0]
			for seq := uint64(1); ; {
				m, err := inbox.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(streams.InboxSubject(u, streams.InboxMessages)))
				if err != nil {
					break
				}
				kinds = append(kinds, string(m.Data))
				seq = m.Sequence + 1
			}
			return len(kinds) == 1
		})
		if want := `"type":"deleted"`; !strings.Contains(kinds[0], want) || strings.Contains(kinds[0], "secret") {
			t.Fatalf("%s's inbox holds %s, want the deleted event alone", u, kinds[0])
		}
	}
}

// eventuallyT polls cond for up to 20 s.
func eventuallyT(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
