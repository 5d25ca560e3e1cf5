//go:build torture

package torture

import (
	"context"
	"fmt"
	"io/fs"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/natter-chat/natter/internal/testnode"
	"github.com/natter-chat/natter/streams"
)

// fullDiskHeadroom is how far past its size each data file may grow once
// the disk is "full": a few dozen of the 16 KiB messages.
const fullDiskHeadroom = 512 << 10

// TestFullDisk runs natter with every file it writes capped a little above
// its current size (RLIMIT_FSIZE: writes past it fail with EFBIG, as on a
// full disk they fail with ENOSPC; a real small filesystem needs root).
// The promises: sends are refused with 503 unavailable and a message,
// the process stays up, and nothing acknowledged, before or during, is
// lost or doubled once the disk has room again (here: a restart without
// the cap, after kill -9).
func TestFullDisk(t *testing.T) {
	f := newFigures(t, "full-disk")
	if _, err := exec.LookPath("prlimit"); err != nil {
		t.Fatalf("the full-disk test caps file sizes with prlimit (util-linux): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	d := startDuo(ctx, t, testnode.Options{NATS: true})
	node, rest, view, as, bob, bs := d.node, d.rest, d.view, d.as, d.bob, d.bs
	first := map[string]string{as[0].ID: firstCursor(ctx, t, node, as[0]), bs[0].ID: firstCursor(ctx, t, node, bs[0])}
	// carol exists before the disk fills, but nobody has written to her:
	// a send to her on a full disk is the first of a new conversation.
	carol, err := rest.Register(ctx, "carol", password)
	if err != nil {
		t.Fatal(err)
	}
	var acked []testnode.Ack
	var largest int64
	content := strings.Repeat("d", 16<<10)
	for i := range 20 {
		a, err := rest.Send(ctx, as[0].Access, testnode.NewSend(fmt.Sprint("before-", i), bob.ID, content))
		if err != nil {
			t.Fatal(err)
		}
		acked = append(acked, a)
	}

	// Fill the disk: restart with the cap and send until three sends in a
	// row are refused.
	if err := node.Term(ctx); err != nil {
		t.Fatal(err)
	}
	largest, err = largestFile(node.DataDir())
	if err != nil {
		t.Fatal(err)
	}
	limit := largest + fullDiskHeadroom
	f.add("file_size_limit_bytes", limit)
	node.SetFileSizeLimit(limit)
	if err := node.Restart(ctx); err != nil {
		t.Fatalf("natter does not start with %d bytes of room per file: %v", fullDiskHeadroom, err)
	}
	sender, _, err := node.Dial(ctx, as[0].Access, testnode.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var (
		refusals    []testnode.Frame
		ackedFull   int
		afterRefuse int
		sends       int
	)
	for sends = 0; len(refusals) < 3 && sends < 4*fullDiskHeadroom/len(content)+100; sends++ {
		cmid := fmt.Sprint("full-", sends)
		ans, err := sender.Request(ctx, cmid, sendFrame(testnode.NewSend(cmid, bob.ID, content)))
		if err != nil {
			t.Fatalf("send %d on a full disk: %v (the connection should live on)", sends, err)
		}
		if ans.Type == "ack" {
			acked = append(acked, ans.Ack())
			ackedFull++
			if len(refusals) > 0 {
				afterRefuse++
			}
			continue
		}
		refusals = append(refusals, ans)
	}
	sender.Close()
	f.add("acked_while_filling", ackedFull)
	f.add("acked_after_a_refusal", afterRefuse)
	if len(refusals) == 0 {
		t.Fatalf("%d sends of %d bytes with %d bytes of room per file: none refused", sends, len(content), fullDiskHeadroom)
	}
	f.add("refusal", fmt.Sprintf("%d %s: %q", refusals[0].ErrorStatus(), refusals[0].Code, refusals[0].Message))
	for _, r := range refusals {
		if r.Type != "error" || r.ErrorStatus() != http.StatusServiceUnavailable || r.Code != "unavailable" || r.Message == "" {
			t.Errorf("a send on a full disk answered %s, want error 503 unavailable with a message", r.Raw)
		}
	}
	msg := strings.ToLower(refusals[0].Message)
	says := strings.Contains(msg, "disk") || strings.Contains(msg, "storage") || strings.Contains(msg, "space") || strings.Contains(msg, "full")
	f.goal("refusal_says_why", says, "true")
	if !says {
		t.Errorf("the refusal does not say the storage is full: %q", refusals[0].Message)
	}
	f.goal("process_up_on_full_disk", node.Running(), "true")
	if !node.Running() {
		t.Fatalf("natter exited on a full disk")
	}
	// Reads keep working or say they cannot; they never answer 500.
	r, err := rest.Do(ctx, "GET", "/v1/conversations", bs[0].Access, nil)
	if err != nil {
		t.Fatal(err)
	}
	f.add("conversation_list_on_full_disk", r.Status)
	if r.Status != http.StatusOK && r.Status != http.StatusServiceUnavailable {
		t.Errorf("conversation list on a full disk: %s, want 200 or 503", r)
	}

	// The store's writes on a full disk: fill the database's files too
	// (each privacy change is one small transaction), then a first send
	// to a new peer, a registration and a login. Each answers 503
	// unavailable with Retry-After and a message, never 500; before the
	// store fills they may still succeed.
	storeFull := false
	for i := 0; i < 4000 && !storeFull; i++ {
		value := []string{"everyone", "nobody"}[i%2]
		r, err := rest.Do(ctx, "PUT", "/v1/me/privacy", as[0].Access, map[string]string{"last_seen": value})
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case r.Status == http.StatusOK:
		case r.Status == http.StatusServiceUnavailable && r.ErrorCode() == "unavailable" && r.Header.Get("Retry-After") != "":
			storeFull = true
		default:
			t.Fatalf("privacy change %d on a full disk: %s, want 200 or 503 unavailable with Retry-After", i, r)
		}
	}
	f.add("store_refused_writes", storeFull)
	storeWrite := func(name string, r *testnode.Response, ok int) {
		t.Helper()
		f.add(name+"_on_full_disk", r.Status)
		code, message := r.Error()
		switch {
		case r.Status == ok && !storeFull:
		case r.Status == http.StatusServiceUnavailable && code == "unavailable" && message != "" && r.Header.Get("Retry-After") != "":
			if strings.Contains(message, "client_message_id") && name != "first_send_to_new_peer" {
				t.Errorf("%s on a full disk is told to retry with a client_message_id: %q", name, message)
			}
		default:
			t.Errorf("%s on a full disk: %s, want 503 unavailable with Retry-After and a message", name, r)
		}
	}
	r, err = rest.Do(ctx, "POST", "/v1/messages", as[0].Access, testnode.NewSend("to-carol", carol.ID, "hello carol"))
	if err != nil {
		t.Fatal(err)
	}
	// JetStream is full as well: even with room in the store the send is
	// refused (503), never acknowledged.
	if r.Status != http.StatusServiceUnavailable {
		t.Errorf("first send to a new peer on a full disk: %s, want 503", r)
	}
	storeWrite("first_send_to_new_peer", r, http.StatusServiceUnavailable)
	r, err = rest.Do(ctx, "POST", "/v1/auth/register", "", map[string]string{"username": "dave", "password": password})
	if err != nil {
		t.Fatal(err)
	}
	storeWrite("register", r, http.StatusCreated)
	r, err = rest.Do(ctx, "POST", "/v1/auth/login", "", map[string]string{"username": "bob", "password": password})
	if err != nil {
		t.Fatal(err)
	}
	storeWrite("login", r, http.StatusOK)
	f.goal("process_up_after_store_writes", node.Running(), "true")

	// Room again: kill -9 (the harsher end of a full disk) and restart
	// without the cap. Everything acknowledged is there, once.
	if err := node.Kill9(); err != nil {
		t.Fatal(err)
	}
	node.SetFileSizeLimit(0)
	if err := node.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	f.add("acked_total", len(acked))
	want := map[msgKey]bool{}
	for _, a := range acked {
		want[msgKey{a.ConversationID, a.Seq}] = true
	}
	var h []testnode.Message
	if !eventually(60*time.Second, func() bool {
		h, err = rest.History(ctx, bs[0].Access, acked[0].ConversationID)
		return err == nil && len(h) >= len(acked)
	}) {
		t.Errorf("history after the disk has room: %d messages (err %v), want the %d acknowledged", len(h), err, len(acked))
	}
	seen := map[int64]int{}
	for _, m := range h {
		seen[m.Seq]++
	}
	missing, doubled := 0, 0
	for _, a := range acked {
		if seen[a.Seq] == 0 {
			missing++
		}
	}
	for _, n := range seen {
		if n > 1 {
			doubled++
		}
	}
	f.expect("acked_missing_from_history", missing, 0)
	f.expect("duplicated_in_history", doubled, 0)
	f.expect("stored_but_refused", len(h)-len(acked), 0)
	for _, d := range []testnode.Device{as[0], bs[0]} {
		frames, err := replay(ctx, node, d, first[d.ID])
		if err != nil {
			t.Errorf("%s's replay after the disk has room: %v", d.Name, err)
			continue
		}
		dc := checkDelivery(d.Name, framesToEvents(frames), want)
		f.expect("acked_missing_from_replay_"+d.Name, dc.missing, 0)
		f.expect("duplicated_in_replay_"+d.Name, dc.duplicates, 0)
	}
	dead, err := view.streamMsgs(ctx, streams.StreamDeadLetter)
	if err != nil {
		t.Fatal(err)
	}
	f.expect("dead_lettered", int(dead), 0)
	a, err := rest.Send(ctx, as[0].Access, testnode.NewSend("after", bob.ID, "room again"))
	if err != nil || a.Duplicate {
		t.Errorf("a new send once the disk has room: %+v, %v", a, err)
	}
}

// largestFile is the size of the biggest file under dir.
func largestFile(dir string) (int64, error) {
	var largest int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		largest = max(largest, info.Size())
		return nil
	})
	return largest, err
}
