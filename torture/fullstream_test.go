//go:build torture

package torture

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/natter-chat/natter/internal/testnode"
	"github.com/natter-chat/natter/streams"
)

// streamCap is the --stream-max-bytes of the full-stream test: small, so
// a few hundred messages fill it.
const streamCap = 2 << 20

// TestFullStream fills natter's streams (--stream-max-bytes 2 MiB) with
// 16 KiB messages until sends are refused. The promise: a full stream
// refuses sends with 503 unavailable and a message that says why, and
// nothing acknowledged before is dropped: every acked message stays in
// history and reaches every device.
func TestFullStream(t *testing.T) {
	f := newFigures(t, "full-stream")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	d := startDuo(ctx, t, testnode.Options{NATS: true, Flags: []string{"--stream-max-bytes", fmt.Sprint(streamCap)}})
	node, rest, view, as, bob, bs := d.node, d.rest, d.view, d.as, d.bob, d.bs
	sender, _, err := node.Dial(ctx, as[0].Access, testnode.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer sender.Close()
	first := map[string]string{as[0].ID: firstCursor(ctx, t, node, as[0]), bs[0].ID: firstCursor(ctx, t, node, bs[0])}
	reader, _, err := node.Dial(ctx, bs[0].Access, testnode.DialOptions{Cursor: first[bob.ID]})
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()

	// Send one at a time until three sends in a row are refused.
	content := strings.Repeat("z", 16<<10)
	var (
		acked     []testnode.Ack
		refusals  []testnode.Frame
		sends     int
		firstFull testnode.Frame
	)
	for sends = 0; len(refusals) < 3 && sends < 10*streamCap/len(content); sends++ {
		ans, err := sender.Request(ctx, fmt.Sprint("f-", sends), sendFrame(testnode.NewSend(fmt.Sprint("f-", sends), bob.ID, content)))
		if err != nil {
			t.Fatal(err)
		}
		switch ans.Type {
		case "ack":
			if len(refusals) > 0 {
				t.Errorf("send %d acked after a refusal: the stream was not full after all", sends)
			}
			acked = append(acked, ans.Ack())
		default:
			if len(refusals) == 0 {
				firstFull = ans
			}
			refusals = append(refusals, ans)
		}
	}
	f.add("stream_max_bytes", streamCap)
	f.add("message_bytes", len(content))
	f.add("acked_before_full", len(acked))
	f.add("refusal", fmt.Sprintf("%d %s: %q", firstFull.ErrorStatus(), firstFull.Code, firstFull.Message))
	if len(refusals) == 0 {
		t.Fatalf("%d sends of %d bytes into %d-byte streams: none refused", sends, len(content), streamCap)
	}
	for _, r := range refusals {
		if r.Type != "error" || r.ErrorStatus() != http.StatusServiceUnavailable || r.Code != "unavailable" || r.Message == "" {
			t.Errorf("a send into a full stream answered %s, want error 503 unavailable", r.Raw)
		}
	}
	msg := strings.ToLower(firstFull.Message)
	clear := strings.Contains(msg, "full") || strings.Contains(msg, "maximum") || strings.Contains(msg, "storage") || strings.Contains(msg, "space")
	f.goal("refusal_says_why", clear, "true")
	if !clear {
		t.Errorf("the refusal does not say the storage is full: %q", firstFull.Message)
	}
	// Over REST too.
	r, err := rest.Do(ctx, "POST", "/v1/messages", as[0].Access, testnode.NewSend("f-rest", bob.ID, content))
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != http.StatusServiceUnavailable || r.ErrorCode() != "unavailable" {
		t.Errorf("REST send into a full stream: %s, want 503 unavailable", r)
	}
	f.add("rest_retry_after", r.Header.Get("Retry-After"))
	if r.Header.Get("Retry-After") != "30" || firstFull.RetryAfterMS != 30_000 {
		t.Errorf("a full stream's refusal: Retry-After %q over REST, retry_after_ms %d over WebSocket; want 30 s, the time retention needs to free space",
			r.Header.Get("Retry-After"), firstFull.RetryAfterMS)
	}
	for _, name := range []string{streams.StreamConv, streams.StreamInbox} {
		s, err := view.js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		st := s.CachedInfo().State
		f.add(strings.ToLower(name)+"_bytes", st.Bytes)
		if st.FirstSeq != 1 {
			t.Errorf("%s starts at sequence %d: it dropped messages to make room", name, st.FirstSeq)
		}
	}

	// Nothing acknowledged is lost: history, bob's live socket, and both
	// devices' replays.
	h, err := rest.History(ctx, bs[0].Access, acked[0].ConversationID)
	if err != nil {
		t.Fatalf("history of a full node: %v", err)
	}
	inHistory := map[string]bool{}
	for _, m := range h {
		inHistory[m.MessageID] = true
	}
	missingHistory := 0
	for _, a := range acked {
		if !inHistory[a.MessageID] {
			missingHistory++
		}
	}
	f.expect("acked_missing_from_history", missingHistory, 0)
	f.expect("stored_but_refused", len(h)-len(acked), 0)

	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	got, _ := reader.WaitN(wctx, 0, len(acked), testnode.IsType("message"))
	wcancel()
	f.expect("acked_missing_live", len(acked)-len(got), 0)
	want := map[msgKey]bool{}
	for _, a := range acked {
		want[msgKey{a.ConversationID, a.Seq}] = true
	}
	for _, d := range []testnode.Device{as[0], bs[0]} {
		who := d.Name
		frames, err := replay(ctx, node, d, first[d.ID])
		if err != nil {
			f.add("replay_"+who, err.Error())
			t.Errorf("%s's replay on a full node: %v", who, err)
			continue
		}
		dc := checkDelivery(who, framesToEvents(frames), want)
		f.expect("acked_missing_from_replay_"+who, dc.missing, 0)
		f.expect("duplicated_in_replay_"+who, dc.duplicates, 0)
	}
	// The node still serves everyone else: a new user connects and syncs.
	_, cs, err := rest.NewUser(ctx, "carol", password, 1)
	if err != nil {
		t.Fatal(err)
	}
	ws, _, err := node.Dial(ctx, cs[0].Access, testnode.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = ws.WaitSynced(ctx)
	ws.Close()
	f.goal("another_user_can_sync", err == nil, "true")
	if err != nil {
		t.Errorf("a new user cannot connect to a node whose streams are full: %v", err)
	}
	dead, err := view.streamMsgs(ctx, streams.StreamDeadLetter)
	if err != nil {
		t.Fatal(err)
	}
	f.expect("dead_lettered", int(dead), 0)
	fanout, err := view.lag(ctx, streams.ConsumerFanout)
	if err != nil {
		t.Fatal(err)
	}
	f.expect("fanout_behind_at_end", int(fanout.behind()), 0)
}
