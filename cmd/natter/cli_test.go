package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/natter-chat/natter/internal/testnode"
	"github.com/natter-chat/natter/natsnode"
	"github.com/natter-chat/natter/streams"
)

// The CLI is tested as people use it: the natter binary run as a process
// against a spawned node, each person with their own config directory
// ($XDG_CONFIG_HOME), passwords on stdin, and the chat through a
// pseudo-terminal.

// cliWait bounds every wait for output, generous for a loaded machine.
const cliWait = 20 * time.Second

// person runs natter commands as one user.
type person struct {
	t      *testing.T
	bin    string
	config string // $XDG_CONFIG_HOME
	server string
	name   string
}

func newPerson(t *testing.T, node *testnode.Node, name string) *person {
	t.Helper()
	bin, err := testnode.Binary()
	if err != nil {
		t.Fatal(err)
	}
	return &person{t: t, bin: bin, config: t.TempDir(), server: node.URL(), name: name}
}

func (p *person) password() string { return p.name + " has a long password" }

func (p *person) cmd(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, p.bin, args...)
	cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+p.config, "NATTER_SERVER="+p.server, "NO_COLOR=")
	return cmd
}

// run runs one command to its end and returns its stdout; stdin is given.
func (p *person) run(stdin string, args ...string) (string, error) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*cliWait)
	defer cancel()
	cmd := p.cmd(ctx, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("natter %s: %v; stderr: %s", strings.Join(args, " "), err, errOut.String())
	}
	return out.String(), err
}

func (p *person) must(stdin string, args ...string) string {
	p.t.Helper()
	out, err := p.run(stdin, args...)
	if err != nil {
		p.t.Fatal(err)
	}
	return out
}

// signUp registers and logs in.
func (p *person) signUp() {
	p.t.Helper()
	p.must(p.password()+"\n", "register", p.name)
	p.must(p.password()+"\n", "login", p.name)
}

func (p *person) credentials() credentials {
	p.t.Helper()
	b, err := os.ReadFile(filepath.Join(p.config, "natter", "credentials.json"))
	if err != nil {
		p.t.Fatal(err)
	}
	var c credentials
	if err := json.Unmarshal(b, &c); err != nil {
		p.t.Fatal(err)
	}
	return c
}

// output collects a process's output for waits.
type output struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	more chan struct{}
}

func newOutput() *output { return &output{more: make(chan struct{})} }

func (o *output) Write(b []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.buf.Write(b)
	close(o.more)
	o.more = make(chan struct{})
	return len(b), nil
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// waitFor waits until ok holds for the output so far.
func (o *output) waitFor(t *testing.T, what string, ok func(string) bool) string {
	t.Helper()
	deadline := time.After(cliWait)
	for {
		o.mu.Lock()
		s, more := o.buf.String(), o.more
		o.mu.Unlock()
		if ok(s) {
			return s
		}
		select {
		case <-more:
		case <-deadline:
			t.Fatalf("no %s within %v; output so far:\n%s", what, cliWait, s)
		}
	}
}

func (o *output) waitContains(t *testing.T, s string) string {
	t.Helper()
	return o.waitFor(t, fmt.Sprintf("%q", s), func(out string) bool { return strings.Contains(out, s) })
}

// background is a long-running natter command (tail, chat).
type background struct {
	cmd       *exec.Cmd
	out, errs *output
	done      chan struct{}
	err       error
}

func (p *person) start(args ...string) *background {
	p.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	b := &background{cmd: p.cmd(ctx, args...), out: newOutput(), errs: newOutput(), done: make(chan struct{})}
	b.cmd.Stdout, b.cmd.Stderr = b.out, b.errs
	if err := b.cmd.Start(); err != nil {
		cancel()
		p.t.Fatal(err)
	}
	go func() { b.err = b.cmd.Wait(); close(b.done) }()
	p.t.Cleanup(func() {
		cancel()
		<-b.done
		if p.t.Failed() {
			p.t.Logf("natter %s stderr:\n%s", strings.Join(args, " "), b.errs.String())
		}
	})
	return b
}

// stop interrupts the command as Ctrl-C would and waits for it.
func (b *background) stop(t *testing.T) {
	t.Helper()
	_ = b.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-b.done:
	case <-time.After(cliWait):
		t.Fatal("natter did not stop on SIGINT")
	}
	if b.err != nil {
		t.Fatalf("natter exited with %v; stderr:\n%s", b.err, b.errs.String())
	}
}

// messages are the message events of a tail --json, by content.
func tailMessages(t *testing.T, out string) map[string]int {
	t.Helper()
	seen := map[string]int{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var ev struct{ Type, Content string }
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("tail --json printed a line that is not JSON: %q", sc.Text())
		}
		if ev.Type == "message" {
			seen[ev.Content]++
		}
	}
	return seen
}

// eventually polls check until it holds, for cliWait.
func eventually(t *testing.T, what string, check func() (string, bool)) {
	t.Helper()
	deadline := time.Now().Add(cliWait)
	for {
		last, ok := check()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v; last:\n%s", what, cliWait, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Register, login (file and directory modes), whoami, send, history,
// conversations, refresh on expiry by several processes at once, logout.
func TestCLIAccountsAndMessages(t *testing.T) {
	node := testnode.Start(t, testnode.Options{Flags: []string{"--access-token-ttl", "2s"}})
	alice, bob := newPerson(t, node, "alice"), newPerson(t, node, "bob")
	alice.signUp()
	bob.signUp()
	// bob's tail outlives several access tokens: the server closes it
	// with 4002 as each expires, and it refreshes and resumes.
	tail := bob.start("tail", "--json")
	tail.errs.waitContains(t, "synced")

	if _, err := alice.run(alice.password()+"\n", "register", "alice"); err == nil || !strings.Contains(err.Error(), "taken") {
		t.Errorf("registering alice twice: %v, want a taken username", err)
	}
	if _, err := newPerson(t, node, "carol").run("whatever\n", "whoami"); err == nil || !strings.Contains(err.Error(), "not logged in: run natter login") {
		t.Errorf("whoami without a login: %v", err)
	}
	dir := filepath.Join(alice.config, "natter")
	for path, want := range map[string]os.FileMode{dir: 0o700, filepath.Join(dir, "credentials.json"): 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s has mode %v, want %v", path, fi.Mode().Perm(), want)
		}
	}
	creds := alice.credentials()
	if creds.Server != node.URL() || creds.UserID == "" || creds.DeviceID == "" || creds.RefreshToken == "" {
		t.Fatalf("stored credentials %+v", creds)
	}
	if out := alice.must("", "whoami"); !strings.Contains(out, "alice") || !strings.Contains(out, creds.DeviceID) {
		t.Errorf("whoami says %q", out)
	}

	if out := alice.must("", "send", "@bob", "hello", "bob"); !strings.Contains(out, "seq 1 sent") {
		t.Errorf("send printed %q, want seq 1 sent", out)
	}
	var ack struct {
		Seq       int64
		Status    string
		Duplicate bool
	}
	if err := json.Unmarshal([]byte(alice.must("", "send", "--json", "@bob", "second")), &ack); err != nil || ack.Seq != 2 || ack.Status != "sent" || ack.Duplicate {
		t.Errorf("send --json: %+v, %v", ack, err)
	}
	// bob's tail tells the server it has them.
	eventually(t, "alice's history with the messages delivered", func() (string, bool) {
		out := alice.must("", "history", "@bob")
		return out, strings.Contains(out, "hello bob") && strings.Count(out, "✓✓ delivered") == 2
	})
	var convs []struct {
		PeerID      string `json:"peer_id"`
		UnreadCount int64  `json:"unread_count"`
		Preview     string `json:"last_message_preview"`
	}
	if err := json.Unmarshal([]byte(bob.must("", "conversations", "--json")), &convs); err != nil || len(convs) != 1 ||
		convs[0].PeerID != creds.UserID || convs[0].UnreadCount != 2 || convs[0].Preview != "second" {
		t.Errorf("bob's conversations: %+v, %v", convs, err)
	}
	if out := bob.must("", "conversations"); !strings.Contains(out, "alice") || !strings.Contains(out, "second") {
		t.Errorf("bob's conversation table:\n%s", out)
	}

	// The access token expires (2 s); four processes at once find out.
	// Each refresh rotates the refresh token and a used one revokes the
	// device, so only the lock in the config directory keeps it alive.
	time.Sleep(time.Until(creds.ExpiresAt.Add(500 * time.Millisecond)))
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := alice.run("", "whoami")
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("whoami after the token expired: %v", err)
		}
	}
	after := alice.credentials()
	if after.RefreshToken == creds.RefreshToken || after.AccessToken == creds.AccessToken || after.DeviceID != creds.DeviceID {
		t.Errorf("the refresh did not store rotated tokens of the same device")
	}
	if out := alice.must("", "whoami"); !strings.Contains(out, creds.DeviceID) {
		t.Errorf("whoami after the refresh: %q", out)
	}

	alice.must("", "send", "@bob", "after the tokens expired")
	tail.out.waitFor(t, "the message sent after the expiry", func(s string) bool { return tailMessages(t, s)["after the tokens expired"] == 1 })
	tail.stop(t)
	if got := tailMessages(t, tail.out.String()); fmt.Sprint(got) != fmt.Sprint(map[string]int{"hello bob": 1, "second": 1, "after the tokens expired": 1}) {
		t.Errorf("bob's tail across token expiries printed %v, want each message once", got)
	}

	// A new login is a new device and revokes the one it replaces.
	rest := node.Client()
	refused := func(token string) bool {
		res, err := rest.Do(context.Background(), "GET", "/v1/me", token, nil)
		return err == nil && res.Status == 401
	}
	alice.must(alice.password()+"\n", "login", "alice")
	again := alice.credentials()
	if again.DeviceID == after.DeviceID || !refused(after.AccessToken) {
		t.Errorf("logging in again: device %s (was %s), the old token refused: %v", again.DeviceID, after.DeviceID, refused(after.AccessToken))
	}

	// Logout revokes the device on the server, not only here.
	alice.must("", "logout")
	if _, err := os.Stat(filepath.Join(dir, "credentials.json")); !os.IsNotExist(err) {
		t.Errorf("credentials still there after logout: %v", err)
	}
	if !refused(again.AccessToken) {
		t.Error("the logged-out device's token still works")
	}
	if _, err := alice.run("", "whoami"); err == nil || !strings.Contains(err.Error(), "natter login") {
		t.Errorf("whoami after logout: %v", err)
	}
}

// tail receives live, follows the node through a restart without
// repeating anything, and a new tail resumes from the stored cursor.
func TestCLITailResumesFromItsCursor(t *testing.T) {
	node := testnode.Start(t, testnode.Options{})
	alice, bob := newPerson(t, node, "alice"), newPerson(t, node, "bob")
	alice.signUp()
	bob.signUp()
	alice.must("", "send", "@bob", "before any tail")

	tail := bob.start("tail", "--json")
	tail.errs.waitContains(t, "synced")
	alice.must("", "send", "@bob", "one")
	tail.out.waitFor(t, "message one", func(s string) bool { return tailMessages(t, s)["one"] == 1 })

	ctx, cancel := context.WithTimeout(context.Background(), 2*cliWait)
	defer cancel()
	if err := node.Term(ctx); err != nil {
		t.Fatal(err)
	}
	if err := node.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	alice.must("", "send", "@bob", "two")
	tail.out.waitFor(t, "message two", func(s string) bool { return tailMessages(t, s)["two"] == 1 })
	tail.stop(t)

	alice.must("", "send", "@bob", "three")
	again := bob.start("tail", "--json")
	again.out.waitFor(t, "message three", func(s string) bool { return tailMessages(t, s)["three"] == 1 })
	alice.must("", "send", "@bob", "four")
	again.out.waitFor(t, "message four", func(s string) bool { return tailMessages(t, s)["four"] == 1 })
	again.stop(t)

	all := tailMessages(t, tail.out.String())
	for k, v := range tailMessages(t, again.out.String()) {
		all[k] += v
	}
	want := map[string]int{"one": 1, "two": 1, "three": 1, "four": 1}
	if fmt.Sprint(all) != fmt.Sprint(want) {
		t.Errorf("the tails printed %v, want each message once (and none from before the first tail): %v", all, want)
	}
	// A cursor this server never issued (its data was reset, say) is
	// dropped with a word, and the tail follows from now.
	cursorFile := filepath.Join(bob.config, "natter", "cursor-inbox.json")
	var stored tailCursor
	if b, err := os.ReadFile(cursorFile); err != nil || json.Unmarshal(b, &stored) != nil || stored.Cursor == "" {
		t.Fatalf("tail's stored cursor: %s, %v", b, err)
	}
	stored.Cursor = "999999999"
	b, _ := json.Marshal(stored)
	if err := os.WriteFile(cursorFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	reset := bob.start("tail", "--json")
	reset.errs.waitContains(t, "unknown to this server")
	reset.errs.waitContains(t, "synced")
	alice.must("", "send", "@bob", "after the reset")
	reset.out.waitFor(t, "message after the reset", func(s string) bool { return tailMessages(t, s)["after the reset"] == 1 })
	reset.stop(t)

	// The readable form names the sender.
	alice.must("", "send", "@bob", "five")
	plain := bob.start("tail")
	plain.out.waitContains(t, "alice → you: five")
	plain.stop(t)
}

// deadLetters lists the node's dead letters through the CLI.
func deadLetters(t *testing.T, op *person, nats []string) []deadLetter {
	t.Helper()
	var dls []deadLetter
	if err := json.Unmarshal([]byte(op.must("", append([]string{"deadletter", "ls", "--json"}, nats...)...)), &dls); err != nil {
		t.Fatal(err)
	}
	return dls
}

// Operators list, show and replay dead letters; a replay puts a status
// back once and refuses what could double a message.
func TestCLIDeadLetters(t *testing.T) {
	node := testnode.Start(t, testnode.Options{NATS: true})
	op := newPerson(t, node, "operator")
	// The URL without the operator's password in it: the CLI reads that
	// from the data directory.
	u, err := url.Parse(node.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	u.User = nil
	flags := []string{"--nats", u.String(), "--data", node.DataDir()}
	if out := op.must("", append([]string{"deadletter", "ls"}, flags...)...); !strings.Contains(out, "no dead letters") {
		t.Errorf("a new node's dead letters:\n%s", out)
	}
	if _, err := op.run("", "deadletter", "ls", "--nats", u.String(), "--data", t.TempDir()); err == nil {
		t.Error("deadletter ls worked without the operator's credentials")
	}

	// Records no consumer can decode: a status (receipts dead-letters
	// it) and a message (persist and fanout both do).
	creds, err := natsnode.ReadOperator(node.DataDir())
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(node.NATSURL(), nats.UserInfo(creds.User, creds.Password))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), cliWait)
	defer cancel()
	if _, err := js.Publish(ctx, streams.ReceiptSubject("poisoned"), []byte("not a receipt")); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, streams.MsgSubject("poisoned"), []byte("not a message")); err != nil {
		t.Fatal(err)
	}
	var dls []deadLetter
	deadline := time.Now().Add(cliWait)
	for dls = deadLetters(t, op, flags); len(dls) < 3; dls = deadLetters(t, op, flags) {
		if time.Now().After(deadline) {
			t.Fatalf("dead letters: %+v, want 3", dls)
		}
		time.Sleep(100 * time.Millisecond)
	}
	var rcpt, msg deadLetter
	for _, d := range dls {
		switch d.OriginSubject {
		case streams.ReceiptSubject("poisoned"):
			rcpt = d
		case streams.MsgSubject("poisoned"):
			msg = d
		}
	}
	if rcpt.Consumer != streams.ConsumerReceipts || !strings.Contains(rcpt.Error, "poison") || msg.Seq == 0 {
		t.Fatalf("dead letters: %+v", dls)
	}
	table := op.must("", append([]string{"deadletter", "ls"}, flags...)...)
	for _, want := range []string{"receipts", "persist", "fanout", streams.ReceiptSubject("poisoned")} {
		if !strings.Contains(table, want) {
			t.Errorf("deadletter ls lacks %q:\n%s", want, table)
		}
	}
	if out := op.must("", append([]string{"deadletter", "show", fmt.Sprint(rcpt.Seq)}, flags...)...); !strings.Contains(out, "not a receipt") || !strings.Contains(out, "poison") {
		t.Errorf("deadletter show:\n%s", out)
	}
	if out := op.must("", append([]string{"streams"}, flags...)...); !strings.Contains(out, "dead letters: 3") || !strings.Contains(out, "fanout") {
		t.Errorf("streams:\n%s", out)
	}

	// A message is refused and stays.
	if _, err := op.run("", append([]string{"deadletter", "replay", fmt.Sprint(msg.Seq)}, flags...)...); err == nil || !strings.Contains(err.Error(), "double") {
		t.Errorf("replaying a message: %v, want a refusal", err)
	}
	conv, err := js.Stream(ctx, streams.StreamConv)
	if err != nil {
		t.Fatal(err)
	}
	before := conv.CachedInfo().State.LastSeq
	// The status goes back onto CONV once, and its dead letter is gone;
	// receipts gives up on it again (it still does not decode), which
	// shows it was consumed.
	if out := op.must("", append([]string{"deadletter", "replay", fmt.Sprint(rcpt.Seq)}, flags...)...); !strings.Contains(out, "replayed") {
		t.Errorf("replay printed %q", out)
	}
	if _, err := op.run("", append([]string{"deadletter", "replay", fmt.Sprint(rcpt.Seq)}, flags...)...); err == nil || !strings.Contains(err.Error(), "no dead letter") {
		t.Errorf("replaying the same dead letter twice: %v", err)
	}
	info, err := conv.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.LastSeq != before+1 {
		t.Errorf("CONV went from %d to %d, want one record more", before, info.State.LastSeq)
	}
	for dls = deadLetters(t, op, flags); len(dls) < 3; dls = deadLetters(t, op, flags) {
		if time.Now().After(deadline.Add(cliWait)) {
			t.Fatalf("dead letters after the replay: %+v", dls)
		}
		time.Sleep(100 * time.Millisecond)
	}
	var again []deadLetter
	for _, d := range dls {
		if d.Seq == rcpt.Seq {
			t.Errorf("dead letter %d is still there after its replay", rcpt.Seq)
		}
		if d.OriginSubject == rcpt.OriginSubject {
			again = append(again, d)
		}
	}
	if len(again) != 1 || again[0].OriginSeq != fmt.Sprint(before+1) {
		t.Errorf("the replayed status was dead-lettered as %+v, want once, from CONV %d", again, before+1)
	}
}

// tailHas reports whether a tail --json printed an event with these
// fields (compared as the text of JSON values).
func tailHas(out string, want map[string]string) bool {
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var ev map[string]any
		if json.Unmarshal(sc.Bytes(), &ev) != nil {
			continue
		}
		ok := true
		for k, v := range want {
			if fmt.Sprint(ev[k]) != v {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// A scripted chat through a pseudo-terminal: alice chats, bob follows
// with tail and reads with his own chat. Alice sees the history, her
// line goes to bob, her typing reaches him, her ticks go ✓, grey ✓✓ when
// delivered, blue ✓✓ when read; bob's typing and live messages show and
// are marked read.
func TestCLIChatThroughATerminal(t *testing.T) {
	node := testnode.Start(t, testnode.Options{})
	alice, bob := newPerson(t, node, "alice"), newPerson(t, node, "bob")
	alice.signUp()
	bob.signUp()
	aliceID := alice.credentials().UserID
	bob.must("", "send", "@alice", "are you there?")

	tail := bob.start("tail", "--json")
	tail.errs.waitContains(t, "synced")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := alice.cmd(ctx, "chat", "@bob")
	tty, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 50, Cols: 160})
	if err != nil {
		t.Fatal(err)
	}
	defer tty.Close()
	screen := newOutput()
	go func() { _, _ = io.Copy(screen, tty) }()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		if t.Failed() {
			t.Logf("alice's screen:\n%q", screen.String())
		}
	}()
	typeIn := func(s string) {
		t.Helper()
		if _, err := tty.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}

	screen.waitContains(t, "chat with bob")
	screen.waitContains(t, "bob: are you there?")
	// What the chat showed is marked read: bob's devices hear of it.
	tail.out.waitFor(t, "alice's read receipt of #1", func(s string) bool {
		return tailHas(s, map[string]string{"type": "receipt", "status": "read", "user_id": aliceID, "seq": "1"})
	})

	typeIn("hel")
	tail.out.waitFor(t, "alice typing", func(s string) bool {
		return tailHas(s, map[string]string{"type": "typing", "state": "composing", "user_id": aliceID})
	})
	typeIn("lo bob\r")
	tail.out.waitFor(t, "alice's message", func(s string) bool {
		return tailHas(s, map[string]string{"type": "message", "content": "hello bob", "seq": "2"})
	})
	const grey, blue = "\x1b[90m", "\x1b[34m"
	screen.waitContains(t, "you: hello bob")
	// bob's tail acknowledged it: delivered.
	screen.waitContains(t, "you: hello bob "+grey+"✓✓")
	if strings.Contains(screen.String(), blue+"✓✓") {
		t.Fatal("blue ticks before bob read anything")
	}
	// bob opens the chat (a script: stdin at its end) and so reads it.
	if out := bob.must("", "chat", "@alice"); !strings.Contains(out, "alice: hello bob") {
		t.Errorf("bob's chat showed:\n%s", out)
	}
	screen.waitContains(t, "you: hello bob "+blue+"✓✓")

	// bob types on another device, then sends: alice sees both, and
	// reads the message as it shows.
	dev, err := node.Client().Login(ctx, testnode.User{ID: bob.credentials().UserID, Name: "bob", Password: bob.password()}, "phone")
	if err != nil {
		t.Fatal(err)
	}
	ws, _, err := node.Dial(ctx, dev.Access, testnode.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	waitCtx, waitCancel := context.WithTimeout(ctx, cliWait)
	defer waitCancel()
	if _, err := ws.WaitSynced(waitCtx); err != nil {
		t.Fatal(err)
	}
	var convID string // from the tail's events
	for _, line := range strings.Split(tail.out.String(), "\n") {
		var ev struct {
			Content        string `json:"content"`
			ConversationID string `json:"conversation_id"`
		}
		if json.Unmarshal([]byte(line), &ev) == nil && ev.Content == "hello bob" {
			convID = ev.ConversationID
		}
	}
	if err := ws.Send(waitCtx, map[string]string{"type": "typing", "conversation_id": convID, "state": "composing"}); err != nil {
		t.Fatal(err)
	}
	screen.waitContains(t, "bob is typing…")
	bob.must("", "send", "@alice", "live one")
	screen.waitContains(t, "bob: live one")
	tail.out.waitFor(t, "alice's read receipt of #3", func(s string) bool {
		return tailHas(s, map[string]string{"type": "receipt", "status": "read", "user_id": aliceID, "seq": "3"})
	})

	typeIn("/quit\r")
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("chat exited with %v", err)
		}
	case <-time.After(cliWait):
		t.Fatal("chat did not quit on /quit")
	}
	tail.stop(t)
	if n := tailMessages(t, tail.out.String())["hello bob"]; n != 1 {
		t.Errorf("bob's tail printed alice's message %d times", n)
	}
}

// A status whose events the receipts consumer published before giving
// up (it gave up storing the new state) is not replayed: its events would
// reach devices twice. One with no event out is, and changes nothing it
// should not.
func TestCLIDeadLetterReplayChecksTheInbox(t *testing.T) {
	node := testnode.Start(t, testnode.Options{NATS: true})
	ctx, cancel := context.WithTimeout(context.Background(), 2*cliWait)
	defer cancel()
	rest := node.Client()
	_, as, err := rest.NewUser(ctx, "alice", "alice's password", 1)
	if err != nil {
		t.Fatal(err)
	}
	bob, bs, err := rest.NewUser(ctx, "bob", "bob's password", 1)
	if err != nil {
		t.Fatal(err)
	}
	ack, err := rest.Send(ctx, as[0].Access, testnode.NewSend("m1", bob.ID, "hi"))
	if err != nil {
		t.Fatal(err)
	}
	if err := rest.Call(ctx, 200, "POST", "/v1/messages/"+ack.MessageID+"/status", bs[0].Access,
		map[string]any{"status": "read", "timestamp": time.Now().UnixMilli()}, nil); err != nil {
		t.Fatal(err)
	}

	nc, err := nats.Connect(node.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	conv, err := js.Stream(ctx, streams.StreamConv)
	if err != nil {
		t.Fatal(err)
	}
	inbox, err := js.Stream(ctx, streams.StreamInbox)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := conv.GetLastMsgForSubject(ctx, streams.ReceiptSubject(ack.ConversationID))
	if err != nil {
		t.Fatal(err)
	}
	msgRec, err := conv.GetLastMsgForSubject(ctx, streams.MsgSubject(ack.ConversationID))
	if err != nil {
		t.Fatal(err)
	}
	lastReceiptSrc := func() string {
		m, err := inbox.GetLastMsgForSubject(ctx, streams.InboxSubject(as[0].ID, streams.InboxReceipts))
		if err != nil {
			return err.Error()
		}
		return m.Header.Get(streams.HeaderSource)
	}
	eventually(t, "alice's receipt event", func() (string, bool) {
		got := lastReceiptSrc()
		return got, got == fmt.Sprint(rec.Sequence)
	})

	// Dead letters as the receipts consumer writes them.
	deadLetter := func(originSeq uint64) uint64 {
		t.Helper()
		m := nats.NewMsg(streams.DeadLetterSubject(streams.ConsumerReceipts))
		m.Data = rec.Data
		m.Header.Set(streams.HeaderError, "store refused it")
		m.Header.Set(streams.HeaderOrigin, rec.Subject)
		m.Header.Set(streams.HeaderOriginSeq, fmt.Sprint(originSeq))
		m.Header.Set(streams.HeaderDeliveries, "8")
		pa, err := js.PublishMsg(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		return pa.Sequence
	}
	u, _ := url.Parse(node.NATSURL())
	u.User = nil
	op := newPerson(t, node, "operator")
	flags := []string{"--nats", u.String(), "--data", node.DataDir()}

	published := deadLetter(rec.Sequence)
	if _, err := op.run("", append([]string{"deadletter", "replay", fmt.Sprint(published)}, flags...)...); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("replaying a status whose events are out: %v, want a refusal", err)
	}
	if _, err := op.run("", append([]string{"deadletter", "show", fmt.Sprint(published)}, flags...)...); err != nil {
		t.Errorf("the refused dead letter is gone: %v", err)
	}

	// The same status as if it had failed before any event: replayed;
	// the status is read already, so the consumer emits nothing new.
	before, err := conv.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	clean := deadLetter(msgRec.Sequence)
	if out := op.must("", append([]string{"deadletter", "replay", fmt.Sprint(clean)}, flags...)...); !strings.Contains(out, "replayed") {
		t.Errorf("replay printed %q", out)
	}
	eventually(t, "the receipts consumer past the replayed status", func() (string, bool) {
		c, err := js.Consumer(ctx, streams.StreamConv, streams.ConsumerReceipts)
		if err != nil {
			return err.Error(), false
		}
		i := c.CachedInfo()
		return fmt.Sprintf("ack floor %d", i.AckFloor.Stream), i.AckFloor.Stream > before.State.LastSeq
	})
	if got := lastReceiptSrc(); got != fmt.Sprint(rec.Sequence) {
		t.Errorf("alice's last receipt event comes from CONV %s after the replay, want %d: a second event", got, rec.Sequence)
	}
}

// tail --with follows one conversation, with a cursor of its own.
func TestCLITailOneConversation(t *testing.T) {
	node := testnode.Start(t, testnode.Options{})
	alice, bob, carol := newPerson(t, node, "alice"), newPerson(t, node, "bob"), newPerson(t, node, "carol")
	alice.signUp()
	bob.signUp()
	carol.signUp()
	with := bob.start("tail", "--json", "--with", "@alice")
	with.errs.waitContains(t, "synced")
	carol.must("", "send", "@bob", "from carol")
	alice.must("", "send", "@bob", "from alice")
	with.out.waitFor(t, "alice's message", func(s string) bool { return tailMessages(t, s)["from alice"] == 1 })
	with.stop(t)
	if got := tailMessages(t, with.out.String()); got["from carol"] != 0 {
		t.Errorf("tail --with @alice printed %v", got)
	}
	// The inbox tail has a cursor of its own: it starts from now.
	inbox := bob.start("tail", "--json")
	inbox.errs.waitContains(t, "synced")
	carol.must("", "send", "@bob", "carol again")
	inbox.out.waitFor(t, "carol's second message", func(s string) bool { return tailMessages(t, s)["carol again"] == 1 })
	inbox.stop(t)
	if got := tailMessages(t, inbox.out.String()); len(got) != 1 {
		t.Errorf("the inbox tail printed %v, want only what came after it started", got)
	}
}
