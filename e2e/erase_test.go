package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// filesHolding lists the files under dir whose bytes contain needle.
func filesHolding(t *testing.T, dir string, needle []byte) []string {
	t.Helper()
	var found []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) {
				return nil // a block file removed while walking
			}
			return err
		}
		if d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			if os.IsNotExist(err) {
				return nil
			}
			return err
		}
		if bytes.Contains(b, needle) {
			rel, _ := filepath.Rel(dir, path)
			found = append(found, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", dir, err)
	}
	return found
}

func secret(t *testing.T, label string) string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return "natter-erase-" + label + "-" + hex.EncodeToString(b)
}

// A message deleted for everyone leaves no copy of its content in the
// data directory (CONV, every INBOX copy, natter.db and its WAL), while
// history keeps its tombstone, seqs stay gap-free and old cursors still
// replay, including one from before events erased at INBOX's head.
func TestDeleteForEveryoneErasesContent(t *testing.T) {
	s := start(t)
	_, ad := s.newUser("alice", 2)
	bob, bd := s.newUser("bob", 1)
	bws, bsynced := s.connect(bd[0], "")
	before := str(bsynced, "cursor")
	// Cursors are per user: alice's own, from the same moment.
	aliceBefore := str(s.must(http.StatusOK, "GET", "/v1/events", ad[1].access, nil), "cursor")

	first, last := secret(t, "first"), secret(t, "last")
	a1 := s.sendREST(ad[0], bob, "m1", first) // INBOX's first events
	a2 := s.sendREST(ad[0], bob, "m2", "stays")
	a3 := s.sendREST(ad[0], bob, "m3", last) // the conversation's tail in CONV
	conv := str(a1, "conversation_id")
	m1 := bws.waitMessage("m1")
	bws.waitMessage("m3")
	dir := s.node.DataDir()
	for _, c := range []string{first, last} {
		if got := filesHolding(t, dir, []byte(c)); len(got) == 0 {
			t.Fatalf("content %s is nowhere in %s before the delete: the check below could not fail", c, dir)
		}
	}

	for _, a := range []obj{a1, a3} {
		b := s.must(http.StatusOK, "DELETE", "/v1/messages/"+str(a, "message_id")+"?for=everyone", ad[0].access, nil)
		if b["deleted"] != true {
			t.Fatalf("delete %s: %v", str(a, "message_id"), b)
		}
	}
	deadline := time.Now().Add(wait)
	for {
		left := append(filesHolding(t, dir, []byte(first)), filesHolding(t, dir, []byte(last))...)
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s after the deletes, deleted content is still in %v", wait, left)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// The erased tail's seq is not handed out again.
	a4 := s.sendREST(ad[0], bob, "m4", "after")
	if num(a4, "seq") != 4 {
		t.Fatalf("the send after erasing seq 3 got seq %d, want 4", num(a4, "seq"))
	}
	h := s.history(bd[0], conv)
	if len(h) != 4 {
		t.Fatalf("history has %d messages, want 4: %+v", len(h), h)
	}
	for i, m := range h {
		wantSeq := int64(4 - i)
		deleted := wantSeq == 1 || wantSeq == 3
		if m.Seq != wantSeq || m.Deleted != deleted || (deleted && m.Content != "") {
			t.Fatalf("history[%d] = seq %d deleted %v content %q, want seq %d deleted %v", i, m.Seq, m.Deleted, m.Content, wantSeq, deleted)
		}
	}
	if str(a2, "message_id") != h[2].MessageID || h[2].Content != "stays" {
		t.Fatalf("message 2 is %+v", h[2])
	}

	// Old cursors replay: from before everything (the erased events were
	// INBOX's first), and from the erased message's own event.
	for _, tc := range []struct {
		name   string
		d      device
		cursor string
	}{
		{"bob from before the first message", bd[0], before},
		{"bob from the erased message's event", bd[0], str(m1, "cursor")},
		{"alice's other device from the start", ad[1], aliceBefore},
	} {
		c, synced := s.connect(tc.d, tc.cursor)
		if synced["type"] != "synced" {
			t.Fatalf("%s: connect answered %v", tc.name, synced)
		}
		var got []string
		for _, f := range c.snapshot() {
			if f["type"] == "synced" {
				break
			}
			if strings.Contains(str(f, "content"), "natter-erase-") {
				t.Fatalf("%s: replay carries deleted content: %v", tc.name, f)
			}
			switch f["type"] {
			case "message":
				got = append(got, "message:"+str(f, "client_message_id"))
			case "deleted":
				got = append(got, "deleted:"+str(f, "message_id"))
			}
		}
		want := []string{"message:m2", "deleted:" + str(a1, "message_id"), "deleted:" + str(a3, "message_id"), "message:m4"}
		if !slices.Equal(got, want) {
			t.Fatalf("%s: replayed %v, want %v", tc.name, got, want)
		}
		c.close()
	}
	// Long-poll from the start as well.
	b := s.must(http.StatusOK, "GET", "/v1/events?cursor="+before+"&timeout=0", bd[0].access, nil)
	var n int
	for _, e := range objs(b["events"]) {
		if strings.Contains(str(e, "content"), "natter-erase-") {
			t.Fatalf("long-poll carries deleted content: %v", e)
		}
		if e["type"] == "message" || e["type"] == "deleted" {
			n++
		}
	}
	if n != 4 {
		t.Fatalf("long-poll from the start: %d message and deleted events, want 4: %v", n, b)
	}
}
