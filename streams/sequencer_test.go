package streams_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/natter-chat/natter/natsnode/natstest"
	"github.com/natter-chat/natter/store/sqlite"
	"github.com/natter-chat/natter/streams"
)

func startSequencers(t *testing.T, n int) ([]*streams.Sequencer, jetstream.Stream) {
	t.Helper()
	srv := natstest.Start(t)
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	var out []*streams.Sequencer
	var conv jetstream.Stream
	for i := range n {
		// One connection each, like separate gateway processes.
		_, js := srv.Connect()
		if i == 0 {
			if err := streams.Ensure(ctx, js, streams.Setup{
				Limits:   streams.Limits{Replicas: 1, ConvMaxAge: time.Hour, InboxMaxAge: time.Hour, MaxBytes: -1, DuplicateWindow: time.Minute},
				Tuning:   streams.ConsumerTuning{MaxAckPending: 100, MaxDeliver: 3, AckWait: time.Second},
				TokenTTL: time.Minute,
			}); err != nil {
				t.Fatal(err)
			}
		}
		if conv, err = js.Stream(ctx, streams.StreamConv); err != nil {
			t.Fatal(err)
		}
		out = append(out, streams.NewSequencer(js, conv, db))
	}
	return out, conv
}

// Several "gateways", each with its own cache, race on one conversation:
// the seqs must be exactly 1..N, each once.
func TestSequencersRacingOnOneConversationAreGapFree(t *testing.T) {
	seqs, _ := startSequencers(t, 3)
	const perWorker, workers = 40, 6
	var mu sync.Mutex
	got := map[int64]string{}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := seqs[w%len(seqs)]
			for i := range perWorker {
				cmid := fmt.Sprintf("w%d-%d", w, i)
				ack, _, err := s.Publish(context.Background(), streams.MessageRecord{ConversationID: "dtest", SenderID: "u1",
					RecipientID: "u2", ClientMessageID: cmid, Content: "x"})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if prev, dup := got[ack.Seq]; dup {
					t.Errorf("seq %d given to %s and %s", ack.Seq, prev, cmid)
				}
				got[ack.Seq] = cmid
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for seq := int64(1); seq <= perWorker*workers; seq++ {
		if _, ok := got[seq]; !ok {
			t.Fatalf("seq %d missing; got %d seqs", seq, len(got))
		}
	}
}

// A retry inside the duplicate window returns the original and consumes
// no seq, even from another gateway.
func TestSequencerRetryReturnsOriginalAndConsumesNoSeq(t *testing.T) {
	seqs, _ := startSequencers(t, 2)
	ctx := context.Background()
	msg := streams.MessageRecord{ConversationID: "dtest", SenderID: "u1", RecipientID: "u2", ClientMessageID: "c1", Content: "first"}
	first, _, err := seqs[0].Publish(ctx, msg)
	if err != nil {
		t.Fatal(err)
	}
	msg.Content = "different content"
	retry, dup, err := seqs[1].Publish(ctx, msg)
	if err != nil {
		t.Fatal(err)
	}
	if !dup || retry.Seq != first.Seq || retry.MessageID != first.MessageID {
		t.Fatalf("retry = %+v, want duplicate of %+v", retry, first)
	}
	next, dup, err := seqs[0].Publish(ctx, streams.MessageRecord{ConversationID: "dtest", SenderID: "u1", RecipientID: "u2", ClientMessageID: "c2", Content: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if next.Seq != first.Seq+1 || dup {
		t.Fatalf("next = %+v, want seq %d", next, first.Seq+1)
	}
}
