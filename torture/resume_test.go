//go:build torture

package torture

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/natter-chat/natter/internal/testnode"
)

// TestResumeUnderLoad reconnects a device with its cursor over and over
// while messages to it keep arriving, so events are stored while each
// connection replays. The contract: a client that reconnects with the
// last cursor it processed misses nothing and sees nothing twice.
func TestResumeUnderLoad(t *testing.T) {
	f := newFigures(t, "resume-under-load")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	node := testnode.Start(t, testnode.Options{})
	rest := node.Client()
	defer rest.Close()
	_, as, err := rest.NewUser(ctx, "sender", password, 1)
	if err != nil {
		t.Fatal(err)
	}
	bob, bs, err := rest.NewUser(ctx, "reader", password, 1)
	if err != nil {
		t.Fatal(err)
	}
	messages := max(2000, int(duration.Seconds()*50))

	// The reader's first cursor, before any message.
	ws, _, err := node.Dial(ctx, bs[0].Access, testnode.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	synced, err := ws.WaitSynced(ctx)
	ws.Close()
	if err != nil {
		t.Fatal(err)
	}
	cursor := synced.Cursor

	// The sender keeps 16 sends in flight, as fast as natter takes them,
	// so events keep arriving while the reader replays.
	sender, _, err := node.Dial(ctx, as[0].Access, testnode.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer sender.Close()
	reqs := make([]testnode.SendRequest, messages)
	for i := range reqs {
		reqs[i] = testnode.NewSend(fmt.Sprintf("r-%d", i), bob.ID, fmt.Sprintf("message %d", i))
	}
	sendErr := make(chan error, 1)
	go func() {
		_, err := sendAll(ctx, sender, reqs, 16)
		sendErr <- err
	}()

	var (
		evs        []event
		reconnects int
		examples   []string
	)
	seenCursor := map[string]int{}
	distinct := map[msgKey]bool{}
	var senderResult error
	senderDone := false
	for reconnects = 1; len(distinct) < messages; reconnects++ {
		before, from := len(distinct), cursor
		ws, _, err := node.Dial(ctx, bs[0].Access, testnode.DialOptions{Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}

		sctx, scancel := context.WithTimeout(ctx, wait)
		_, synced, err := ws.Wait(sctx, 0, testnode.IsType("synced"))
		scancel()
		if err != nil {
			var b strings.Builder
			for _, fr := range ws.Frames(max(0, ws.Len()-5)) {
				fmt.Fprintf(&b, "\n  %.200s", fr.Raw)
			}
			t.Fatalf("connection %d with cursor %s: no synced: %v; %d frames, the last:%s", reconnects, cursor, err, ws.Len(), b.String())
		}
		// A few live events after synced, or a short while.
		wctx, wcancel := context.WithTimeout(ctx, 100*time.Millisecond)
		_, _ = ws.WaitN(wctx, synced, 10, func(f testnode.Frame) bool { return f.Durable() })
		wcancel()
		ws.Close()
		for i, fr := range ws.Frames(0) {
			if fr.Type == "synced" {
				cursor = fr.Cursor
			}
			if !fr.Durable() || fr.Type != "message" {
				continue
			}
			if n := seenCursor[fr.Cursor]; n > 0 && len(examples) < 5 {
				where := "live"
				if i < synced {
					where = "replay"
				}
				examples = append(examples, fmt.Sprintf("connection %d (with cursor %s): event %s (seq %d) again in the %s, frame %d of %d, synced at frame %d",
					reconnects, from, fr.Cursor, fr.Seq, where, i, ws.Len(), synced))
			}
			seenCursor[fr.Cursor]++
			distinct[msgKey{fr.ConversationID, fr.Seq}] = true
			evs = append(evs, event{key: msgKey{fr.ConversationID, fr.Seq}, messageID: fr.MessageID, cursor: fr.Cursor, conn: reconnects})
			cursor = fr.Cursor
		}
		if !senderDone {
			select {
			case senderResult = <-sendErr:
				senderDone = true
			default:
			}
		} else if len(distinct) == before {
			break // everything is stored and this connection brought nothing new
		}
	}
	if !senderDone {
		senderResult = <-sendErr
	}
	if senderResult != nil {
		t.Fatalf("sender: %v", senderResult)
	}
	want := map[msgKey]bool{}
	for _, a := range sender.Frames(0) {
		switch {
		case a.Type == "ack":
			want[msgKey{a.ConversationID, a.Seq}] = true
		case a.Type == "error":
			t.Errorf("send %s refused: %s", a.Ref, a.Raw)
		}
	}
	d := checkDelivery("reader", evs, want)
	f.add("messages", messages)
	f.add("connections", reconnects)
	f.add("events_processed", len(evs))
	f.expect("duplicated", d.duplicates, 0)
	f.expect("out_of_order", d.outOfOrder, 0)
	f.expect("delivery_skips", d.skipped, 0)
	f.expect("never_delivered", d.missing, 0)
	if t.Failed() {
		t.Logf("examples:\n  %s", strings.Join(slices.Concat(examples, d.examples), "\n  "))
	}
}

// TestOutboxFlush is a phone back online with messages queued while it
// was offline: it writes them back to back on its new connection and
// reads every frame the server sends as fast as it comes. A client that
// reads is not "too slow to read" (4029): every message must be acked on
// that one connection.
func TestOutboxFlush(t *testing.T) {
	f := newFigures(t, "outbox-flush")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	node := testnode.Start(t, testnode.Options{})
	rest := node.Client()
	defer rest.Close()
	_, as, err := rest.NewUser(ctx, "phone", password, 1)
	if err != nil {
		t.Fatal(err)
	}
	bob, bs, err := rest.NewUser(ctx, "peer", password, 1)
	if err != nil {
		t.Fatal(err)
	}
	// The phone was online once, then messages came while it was away.
	ws, _, err := node.Dial(ctx, as[0].Access, testnode.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	synced, err := ws.WaitSynced(ctx)
	ws.Close()
	if err != nil {
		t.Fatal(err)
	}
	const missed = 5000
	peer, _, err := node.Dial(ctx, bs[0].Access, testnode.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	reqs := make([]testnode.SendRequest, missed)
	for i := range reqs {
		reqs[i] = testnode.NewSend(fmt.Sprint("m-", i), as[0].ID, "while you were away")
	}
	if _, err := sendAll(ctx, peer, reqs, 32); err != nil {
		t.Fatal(err)
	}
	const queued = 500
	attempts, acked := 0, map[string]bool{}
	cursor := synced.Cursor
	closes := map[string]int{}
	for attempts < 20 && len(acked) < queued {
		attempts++
		ws, _, err := node.Dial(ctx, as[0].Access, testnode.DialOptions{Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		for i := range queued {
			if acked[fmt.Sprint("q-", i)] {
				continue
			}
			if err := ws.SendMessage(ctx, testnode.NewSend(fmt.Sprint("q-", i), bob.ID, "written while offline")); err != nil {
				break
			}
		}
		wctx, wcancel := context.WithTimeout(ctx, wait)
		_, err = ws.WaitN(wctx, 0, queued-len(acked), testnode.IsType("ack"))
		wcancel()
		for _, fr := range ws.Frames(0) {
			switch {
			case fr.Type == "ack":
				acked[fr.ClientMessageID] = true
			case fr.Type == "synced" || fr.Durable():
				cursor = fr.Cursor // resume after what was processed, as a client does
			}
		}
		ws.Close()
		if err != nil {
			code, text := ws.CloseCode()
			closes[fmt.Sprintf("%d %s", code, text)]++
		}
	}
	f.add("missed_messages_replayed", missed)
	f.add("queued_messages", queued)
	f.add("acked", len(acked))
	f.add("server_closes", fmtCounts(closes))
	f.expect("connections_needed", attempts, 1)
}
