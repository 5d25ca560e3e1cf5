//go:build torture

package torture

import (
	"bufio"
	"context"
	"fmt"
	"github.com/natter-chat/natter/internal/syncbuf"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/natter-chat/natter/internal/testnode"
)

// fdLimit is natter's RLIMIT_NOFILE in TestFDExhaustion: client
// connections get 1024 - max(256, 10 %) = 768 of them.
const fdLimit = 1024

// TestFDExhaustion attacks a node started with a low descriptor limit
// (prlimit --nofile, as the full-disk test caps file sizes) with idle
// connections from many loopback addresses (127.0.0.2 and up stand for
// distinct clients) until it refuses them. The promises: every address
// is capped (429), the total stops short of the limit (503), the process
// never runs out of descriptors, so JetStream never records a write error,
// the users connected before keep sending and receiving, and once the
// attackers leave, everything, new connections included, works again.
func TestFDExhaustion(t *testing.T) {
	f := newFigures(t, "fd-exhaustion")
	if _, err := exec.LookPath("prlimit"); err != nil {
		t.Fatalf("the fd-exhaustion test caps descriptors with prlimit (util-linux): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bin, err := testnode.Binary()
	if err != nil {
		t.Fatal(err)
	}
	addr, err := testnode.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	var log syncbuf.Buffer
	// Rate limits stay on (the per-address cap is one); idle connections
	// are kept for the whole test, so the attack does not fade by itself.
	cmd := exec.Command("prlimit", fmt.Sprintf("--nofile=%d", fdLimit), bin, "serve", "--http", addr,
		"--data", filepath.Join(t.TempDir(), "data"), "--http-idle-timeout", "10m")
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("natter log:\n%s", log.String())
		}
	})
	base := "http://" + addr
	if !eventually(wait, func() bool { return healthz(base, "127.0.0.1") == 200 }) {
		t.Fatalf("natter not healthy:\n%s", log.String())
	}
	pid := cmd.Process.Pid // prlimit execs natter: same pid

	rest := testnode.NewClient(base, testnode.ClientOptions{})
	defer rest.Close()
	_, as, err := rest.NewUser(ctx, "alice", password, 1)
	if err != nil {
		t.Fatal(err)
	}
	bob, bs, err := rest.NewUser(ctx, "bob", password, 1)
	if err != nil {
		t.Fatal(err)
	}
	aws, _, err := testnode.Dial(ctx, testnode.WSURL(addr, as[0].Access, testnode.DialOptions{}), "", testnode.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer aws.Close()
	bws, _, err := testnode.Dial(ctx, testnode.WSURL(addr, bs[0].Access, testnode.DialOptions{}), "", testnode.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer bws.Close()
	for _, ws := range []*testnode.WS{aws, bws} {
		if _, err := ws.WaitSynced(ctx); err != nil {
			t.Fatal(err)
		}
	}
	send := func(prefix string, n int) int {
		reqs := make([]testnode.SendRequest, n)
		for i := range reqs {
			reqs[i] = testnode.NewSend(fmt.Sprintf("%s-%d", prefix, i), bob.ID, "m "+prefix)
		}
		from := bws.Len()
		answers, err := sendAll(ctx, aws, reqs, 10)
		if err != nil {
			t.Fatalf("%s: %v", prefix, err)
		}
		acked := 0
		for _, a := range answers {
			if a.Type == "ack" {
				acked++
			}
		}
		if _, err := bws.WaitN(ctx, from, acked, func(f testnode.Frame) bool {
			return f.Type == "message" && strings.HasPrefix(f.ClientMessageID, prefix+"-")
		}); err != nil {
			t.Fatalf("%s: bob did not get the %d acknowledged messages: %v", prefix, acked, err)
		}
		return acked
	}
	f.expect("acked_before", send("before", 20), 20)
	fdsAtRest := countFDs(pid)
	f.add("fds_at_rest", fdsAtRest)

	// The attack: from 127.0.0.2 up, 100 idle keep-alive connections per
	// address (each proven admitted by one answered request), until
	// the server refuses for lack of room.
	var (
		mu       sync.Mutex
		held     []net.Conn
		statuses = map[int]int{}
		maxFDs   int
	)
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	addrs := 0
	for a := 2; a < 40 && statuses[503] == 0; a++ {
		addrs++
		from := fmt.Sprintf("127.0.0.%d", a)
		var wg sync.WaitGroup
		for range 100 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, code := idleConn(addr, from)
				mu.Lock()
				defer mu.Unlock()
				statuses[code]++
				if code == 200 {
					held = append(held, c)
				} else if c != nil {
					c.Close()
				}
			}()
		}
		wg.Wait()
		maxFDs = max(maxFDs, countFDs(pid))
	}
	f.add("attacker_addresses", addrs)
	f.add("attack_admitted", statuses[200])
	f.add("attack_refused_429", statuses[429])
	f.add("attack_refused_503", statuses[503])
	f.add("attack_other", fmt.Sprint(statuses))
	if statuses[429] == 0 || statuses[503] == 0 {
		t.Fatalf("no per-address (429) or total (503) refusal: %v", statuses)
	}
	if statuses[200] > fdLimit-256 {
		t.Errorf("%d attacker connections admitted, more than the %d the reserve leaves", statuses[200], fdLimit-256)
	}

	// Under attack: the connected users keep sending, the store and
	// JetStream keep their descriptors, and /healthz tells a newcomer the
	// truth (no room: 503), not a 200 that every send would contradict.
	f.expect("acked_during_attack", send("during", 20), 20)
	maxFDs = max(maxFDs, countFDs(pid))
	f.add("fds_max", maxFDs)
	f.add("fd_limit", fdLimit)
	if maxFDs >= fdLimit {
		t.Errorf("natter reached its descriptor limit: %d of %d", maxFDs, fdLimit)
	}
	// (Sends stay within the per-user rate limit's burst of 100.)
	if code := healthz(base, "127.0.0.99"); code != http.StatusServiceUnavailable {
		t.Errorf("/healthz for a newcomer during the attack: %d, want 503 (no room)", code)
	}

	// The attackers leave: new connections work again at once.
	mu.Lock()
	for _, c := range held {
		c.Close()
	}
	held = nil
	mu.Unlock()
	if !eventually(wait, func() bool { return healthz(base, "127.0.0.1") == 200 }) {
		t.Fatal("/healthz not 200 after the attackers left")
	}
	fresh := testnode.NewClient(base, testnode.ClientOptions{})
	defer fresh.Close()
	if _, err := fresh.Send(ctx, as[0].Access, testnode.NewSend("after-rest", bob.ID, "after")); err != nil {
		t.Fatalf("REST send after the attack: %v", err)
	}
	f.expect("acked_after", send("after", 20), 20)

	text := log.String()
	writeErrs := strings.Count(text, "critical write error") + strings.Count(text, "too many open files")
	f.expect("jetstream_write_errors", writeErrs, 0)
	if writeErrs != 0 {
		t.Errorf("natter logged %d descriptor or write errors", writeErrs)
	}
	if !strings.Contains(text, "refusing connections") {
		t.Error("natter did not log the refusals")
	}
}

// idleConn opens a keep-alive connection from the loopback address from,
// makes one request on it and returns it with the answer's status (0 for
// a connection refused, reset or closed without an answer).
func idleConn(addr, from string) (net.Conn, int) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, 0
	}
	_ = c.SetDeadline(time.Now().Add(wait))
	if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: natter\r\n\r\n"); err != nil {
		c.Close()
		return nil, 0
	}
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		c.Close()
		return nil, 0
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	_ = c.SetDeadline(time.Time{})
	return c, res.StatusCode
}

// healthz is the status of GET /healthz on a new connection from from.
func healthz(base, from string) int {
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext:       (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}).DialContext,
		DisableKeepAlives: true,
	}}
	res, err := client.Get(base + "/healthz")
	if err != nil {
		return 0
	}
	res.Body.Close()
	return res.StatusCode
}

// countFDs is how many descriptors process pid holds.
func countFDs(pid int) int {
	es, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return -1
	}
	return len(es)
}

// TestWriteErrorRecoveredWithoutRestart fills the disk of a running node
// (its RLIMIT_FSIZE lowered in place with prlimit --pid, so writes fail
// with EFBIG as on a full disk with ENOSPC) until JetStream closes the
// stream with a write error, then gives the room back. The promise: the
// same process accepts sends again within seconds (its guard reopens the
// stream), and every acknowledged message is in the history once.
func TestWriteErrorRecoveredWithoutRestart(t *testing.T) {
	f := newFigures(t, "write-error-recovery")
	if _, err := exec.LookPath("prlimit"); err != nil {
		t.Fatalf("this test caps file sizes with prlimit (util-linux): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	d := startDuo(ctx, t, testnode.Options{})
	node, rest, as, bob := d.node, d.rest, d.as, d.bob
	pid := node.Pid()
	content := strings.Repeat("w", 16<<10)
	acked := map[string]bool{}
	send := func(cmid string) (int, error) {
		r, err := rest.Do(ctx, http.MethodPost, "/v1/messages", as[0].Access, testnode.NewSend(cmid, bob.ID, content))
		if err != nil {
			return 0, err
		}
		if r.Status == http.StatusOK || r.Status == http.StatusCreated {
			acked[cmid] = true
		}
		return r.Status, nil
	}
	for i := range 10 {
		if code, err := send(fmt.Sprint("before-", i)); err != nil || len(acked) != i+1 {
			t.Fatalf("send before the cap: %d %v", code, err)
		}
	}
	largest, err := largestFile(node.DataDir())
	if err != nil {
		t.Fatal(err)
	}
	capFiles := func(limit string) {
		if out, err := exec.Command("prlimit", "--pid", fmt.Sprint(pid), "--fsize="+limit).CombinedOutput(); err != nil {
			t.Fatalf("prlimit --fsize=%s: %v\n%s", limit, err, out)
		}
	}
	capFiles(fmt.Sprintf("%d:", largest+fullDiskHeadroom))
	refused := 0
	for i := 0; refused < 3 && i < 200; i++ {
		code, err := send(fmt.Sprint("full-", i))
		if err != nil {
			t.Fatal(err)
		}
		if code == http.StatusServiceUnavailable {
			refused++
		}
	}
	f.add("refused_on_full_disk", refused)
	if refused < 3 {
		t.Fatal("sends were not refused on a full disk")
	}
	if !eventually(wait, func() bool { return strings.Contains(node.Log(), "closed by a write error") }) {
		t.Fatalf("no write error reported by the guard")
	}

	// Room again, same process.
	capFiles("unlimited:")
	start := time.Now()
	recovered := eventually(wait, func() bool {
		code, err := send(fmt.Sprint("after-", time.Now().UnixNano()))
		return err == nil && (code == http.StatusOK || code == http.StatusCreated)
	})
	f.add("recovered_after", time.Since(start))
	f.goal("recovered_without_restart", recovered && node.Pid() == pid && node.Starts() == 1, "true")
	if !recovered {
		t.Fatalf("sends still refused %v after the disk had room again", wait)
	}
	if node.Pid() != pid || node.Starts() != 1 {
		t.Fatalf("natter was restarted (pid %d, was %d)", node.Pid(), pid)
	}
	conv, err := rest.Conversation(ctx, as[0].Access, bob.ID)
	if err != nil {
		t.Fatal(err)
	}
	var missing int
	if !eventually(wait, func() bool {
		hist, err := rest.History(ctx, as[0].Access, conv)
		if err != nil {
			return false
		}
		seen := map[string]int{}
		for _, m := range hist {
			seen[m.ClientMessageID]++
		}
		missing = 0
		for cmid := range acked {
			if seen[cmid] != 1 {
				missing++
			}
		}
		return missing == 0
	}) {
		t.Errorf("%d acknowledged messages missing or doubled in the history", missing)
	}
	f.expect("acked_missing_or_doubled", missing, 0)
	f.add("acked", len(acked))
}
