package streams_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/natter-chat/natter/natsnode/natstest"
	"github.com/natter-chat/natter/store/sqlite"
	"github.com/natter-chat/natter/streams"
)

// Erasing a conversation's last message from CONV must not give its seq
// out again, neither to the sequencer that cached it nor to a fresh one
// (another gateway, a restart) that reads the tail back from CONV. The
// store is empty here, so only the erased-tail record can tell.
func TestErasedTailSeqIsNotReused(t *testing.T) {
	srv := natstest.Start(t)
	ctx := context.Background()
	nc, js := srv.Connect()
	if err := streams.Ensure(ctx, js, streams.Setup{
		Limits:   streams.Limits{Replicas: 1, ConvMaxAge: time.Hour, InboxMaxAge: time.Hour, MaxBytes: -1, DuplicateWindow: time.Minute},
		Tuning:   streams.ConsumerTuning{MaxAckPending: 100, MaxDeliver: 3, AckWait: time.Second},
		TokenTTL: time.Minute,
	}); err != nil {
		t.Fatal(err)
	}
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	conv, err := js.Stream(ctx, streams.StreamConv)
	if err != nil {
		t.Fatal(err)
	}
	er, err := streams.NewEraser(ctx, nc, js)
	if err != nil {
		t.Fatal(err)
	}
	cached := streams.NewSequencer(js, conv, db)
	publish := func(s *streams.Sequencer, cmid string) int64 {
		t.Helper()
		rec, _, err := s.Publish(ctx, streams.MessageRecord{ConversationID: "c1", SenderID: "u1", RecipientID: "u2",
			MessageType: "user", Content: "x", ClientMessageID: cmid})
		if err != nil {
			t.Fatal(err)
		}
		return rec.Seq
	}
	for i, cmid := range []string{"a", "b", "c"} {
		if got := publish(cached, cmid); got != int64(i+1) {
			t.Fatalf("seq %d, want %d", got, i+1)
		}
	}
	tail, err := conv.GetLastMsgForSubject(ctx, streams.MsgSubject("c1"))
	if err != nil {
		t.Fatal(err)
	}
	// A record that is not the message named is refused and kept.
	if err := er.EraseConvMessage(ctx, "c1", 2, tail.Sequence); err == nil {
		t.Fatal("erased message 3 as if it were message 2")
	}
	if err := er.EraseConvMessage(ctx, "c1", 3, tail.Sequence); err != nil {
		t.Fatal(err)
	}
	if err := er.EraseConvMessage(ctx, "c1", 3, tail.Sequence); err != nil {
		t.Fatalf("erasing again: %v", err)
	}
	if _, err := conv.GetMsg(ctx, tail.Sequence); !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Fatalf("erased record still readable: %v", err)
	}
	if got := publish(cached, "d"); got != 4 {
		t.Fatalf("the sequencer that cached the erased tail gave seq %d, want 4", got)
	}
	fresh := streams.NewSequencer(js, conv, db)
	if got := publish(fresh, "e"); got != 5 {
		t.Fatalf("a fresh sequencer gave seq %d, want 5", got)
	}
	// Erase the new tail too, then a fresh sequencer once more.
	tail, _ = conv.GetLastMsgForSubject(ctx, streams.MsgSubject("c1"))
	if err := er.EraseConvMessage(ctx, "c1", 5, tail.Sequence); err != nil {
		t.Fatal(err)
	}
	if got := publish(streams.NewSequencer(js, conv, db), "f"); got != 6 {
		t.Fatalf("after erasing seq 5 a fresh sequencer gave seq %d, want 6", got)
	}
	// The fallback search by walking the subject finds what is left.
	last, _ := conv.GetLastMsgForSubject(ctx, streams.MsgSubject("c1"))
	for _, tc := range []struct {
		seq  int64
		want bool
	}{{2, true}, {4, true}, {6, true}, {3, false}, {5, false}, {7, false}} {
		got, err := er.FindConvMessage(ctx, "c1", tc.seq, last.Sequence+1)
		if err != nil {
			t.Fatal(err)
		}
		if (got != 0) != tc.want {
			t.Fatalf("FindConvMessage(seq %d) = %d, want found %v", tc.seq, got, tc.want)
		}
		if got != 0 {
			m, err := conv.GetMsg(ctx, got)
			if err != nil || m.Header.Get(streams.HeaderSeq) != fmt.Sprint(tc.seq) {
				t.Fatalf("FindConvMessage(seq %d) = CONV %d, which is %v %v", tc.seq, got, m, err)
			}
		}
	}
}

func TestErasedHeadCovers(t *testing.T) {
	now := time.UnixMilli(1_000_000)
	h := streams.ErasedHead{Lo: 5, Hi: 9, Until: now.UnixMilli() + 1}
	for _, tc := range []struct {
		from, to uint64
		at       time.Time
		want     bool
	}{
		{5, 9, now, true},
		{6, 7, now, true},
		{4, 9, now, false},                       // 4 was not erased: aged out
		{5, 10, now, false},                      // 10 neither
		{5, 9, now.Add(time.Millisecond), false}, // the oldest erased event would have aged out by now
	} {
		if got := h.Covers(tc.from, tc.to, tc.at); got != tc.want {
			t.Errorf("Covers(%d, %d) = %v, want %v", tc.from, tc.to, got, tc.want)
		}
	}
	if (streams.ErasedHead{}).Covers(0, 0, now) {
		t.Error("the zero record covers something")
	}
}
