package e2e

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// Event cursors are opaque per user (issue 12, hole 9): alice's cursors
// on either side of 100 messages between other users do not give the
// distance away, and the decimal cursors of before still resume after
// an upgrade (a restart stands in for it).
func TestCursorsHideOtherUsersTraffic(t *testing.T) {
	t.Parallel()
	s := start(t)
	alice, as := s.newUser("alice", 1)
	bob, bs := s.newUser("bob", 1)
	_, cs := s.newUser("carol", 1)

	events := func(d device, cursor string) obj {
		return s.must(http.StatusOK, "GET", "/v1/events?timeout=0&cursor="+url.QueryEscape(cursor), d.access, nil)
	}
	s.sendREST(bs[0], alice, "b1", "hello alice")
	var first obj
	eventually(t, "alice's first event", func() bool {
		evs := objs(s.must(http.StatusOK, "GET", "/v1/events?timeout=0&cursor=0", as[0].access, nil)["events"])
		if len(evs) > 0 {
			first = evs[0]
		}
		return len(evs) == 1
	})
	for i := range 100 {
		s.sendREST(cs[0], bob, fmt.Sprintf("c%d", i), "between carol and bob")
	}
	s.sendREST(bs[0], alice, "b2", "hello again")
	c1 := str(first, "cursor")
	var second obj
	eventually(t, "alice's second event", func() bool {
		evs := objs(events(as[0], c1)["events"])
		if len(evs) > 0 {
			second = evs[0]
		}
		return len(evs) == 1
	})
	c2 := str(second, "cursor")
	if second["client_message_id"] != "b2" {
		t.Fatalf("alice's event after her first cursor: %v, want bob's b2 alone", second)
	}
	for _, c := range []string{c1, c2} {
		if _, err := strconv.ParseUint(c, 10, 64); err == nil {
			t.Errorf("cursor %q is a number: it shows the server's event count", c)
		}
		if len(c) != len(c1) {
			t.Errorf("cursors %q and %q differ in length", c1, c)
		}
	}
	same := 0
	for i := 1; i < len(c1); i++ {
		if c1[i] == c2[i] {
			same++
		}
	}
	if same > 8 {
		t.Errorf("cursors %s and %s share %d of %d characters: the encoding shows their distance", c1, c2, same, len(c1)-1)
	}
	// Carol's cursors are hers: alice cannot use one.
	carolCur := str(s.must(http.StatusOK, "GET", "/v1/events", cs[0].access, nil), "cursor")
	wantError(t, s.do("GET", "/v1/events?timeout=0&cursor="+url.QueryEscape(carolCur), as[0].access, nil), http.StatusBadRequest, "bad_request")

	// A decimal cursor of before the upgrade still resumes: from "0",
	// alice gets her own two events and nothing of carol's, each with an
	// opaque cursor; resuming from the last one gives nothing more.
	select {
	case <-s.signal(syscall.SIGTERM):
	case <-time.After(wait):
		t.Fatal("natter still running after SIGTERM")
	}
	s.restart()
	b := events(as[0], "0")
	evs := objs(b["events"])
	if len(evs) != 2 || evs[0]["client_message_id"] != "b1" || evs[1]["client_message_id"] != "b2" {
		t.Fatalf("legacy cursor 0 after a restart: %v, want alice's b1 and b2", b)
	}
	if str(evs[1], "cursor") != c2 || str(b, "cursor") != c2 {
		t.Errorf("cursors after a restart: %v and %v, want %s again", evs[1]["cursor"], b["cursor"], c2)
	}
	if n := len(objs(events(as[0], c2)["events"])); n != 0 {
		t.Errorf("resume from the last cursor after a restart: %d events, want none", n)
	}
}
