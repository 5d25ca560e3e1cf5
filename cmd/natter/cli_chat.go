package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"golang.org/x/term"

	nclient "github.com/natter-chat/natter/client"
	"github.com/natter-chat/natter/schema"
)

// Typing: "composing" is sent on the first key and again at most every
// typingRepeat while keys come; "paused" after typingPause without one.
// A peer's "composing" shows for typingShow unless renewed (a "paused"
// may never come: the peer's connection can drop).
const (
	typingRepeat = 4 * time.Second
	typingPause  = 3 * time.Second
	typingShow   = 6 * time.Second
)

// cliChat is an interactive chat with one user: the recent history, then
// live messages with WhatsApp's ticks on the caller's own (✓ sent, ✓✓
// delivered, blue ✓✓ read), the peer's typing, and every line typed sent.
// Messages shown are marked read. On a terminal it runs in raw mode with
// a line editor; otherwise it reads lines from stdin until EOF (scripts).
func cliChat(ctx context.Context, args []string, cio cliIO) error {
	p := newPersonFlags("chat", "USER|@username [--history N]   (/quit, Ctrl-D or Ctrl-C to leave)")
	histN := p.fs.Int("history", 20, "show this many of the latest messages first")
	pos, err := p.parse(args, 1, 1)
	if err != nil {
		return err
	}
	c, _, err := p.session()
	if err != nil {
		return err
	}
	peer, err := resolveUser(ctx, c, pos[0])
	if err != nil {
		return err
	}
	conv, err := c.ConversationWith(ctx, peer.UserID)
	if err != nil {
		return explain(err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	ch := &chatSession{c: c, me: c.Session().UserID, peer: peer, conv: conv, names: newNames(c),
		shown: map[int64]*chatLine{}, ready: make(chan struct{})}
	ui, err := newChatUI(cio, ch)
	if err != nil {
		return err
	}
	defer ui.close()
	ch.ui = ui
	ui.printf("chat with %s (%s). Type a message and Enter; /quit to leave.", peer.Username, c.BaseURL())

	f := &follower{c: c, notice: func(format string, args ...any) { ui.printf("("+format+")", args...) },
		handle:    ch.event,
		connected: ch.connected,
	}
	followed := make(chan error, 1)
	go func() { followed <- f.run(ctx) }()

	// The history is read once the stream is synced: what came before is
	// in it, what comes after arrives live; a message in both is shown
	// once (by seq).
	select {
	case <-ch.ready:
	case err := <-followed:
		if err == nil {
			err = ctx.Err()
		}
		return err
	}
	if err := ch.showHistory(ctx, *histN); err != nil {
		return explain(err)
	}
	// Lines are read by a goroutine of their own, so that a signal or
	// the end of the follow (a revoked device) ends the chat while the
	// terminal waits for a key; a read blocked at exit ends with the
	// process.
	lines := make(chan string)
	go func() {
		defer close(lines)
		for {
			line, err := ui.readLine()
			if err != nil {
				return // EOF, Ctrl-C, Ctrl-D
			}
			select {
			case lines <- line:
			case <-ctx.Done():
				return
			}
		}
	}()
	for quit := false; !quit; {
		select {
		case <-ctx.Done():
			quit = true
		case err := <-followed:
			return err
		case line, ok := <-lines:
			line = strings.TrimSpace(line)
			switch {
			case !ok || line == "/quit" || line == "/exit":
				quit = true
			case line != "":
				ch.typed(false)
				ack, err := sendOnce(ctx, c, nclient.SendRequest{ClientMessageID: uuid.NewString(), RecipientID: peer.UserID, Content: line})
				if err != nil {
					ui.printf("(not sent: %v)", explain(err))
					continue
				}
				ch.acked(ack, line)
			}
		}
	}
	cancel()
	if err := <-followed; err != nil {
		return err
	}
	return nil
}

// chatLine is a message on screen.
type chatLine struct {
	sender string
	text   string
	ts     int64
	status string // the caller's own messages: as the peer's receipts say
}

// chatSession is the state of one chat; mu guards everything below it.
type chatSession struct {
	c     *nclient.Client
	me    string
	peer  nclient.User
	conv  string
	names *names
	ui    chatUI
	ready chan struct{} // closed at the first synced

	mu            sync.Mutex
	conn          *nclient.Conn
	synced        bool
	shown         map[int64]*chatLine // by seq
	deliveredUpTo int64               // the peer's receipts, for the caller's messages
	readUpTo      int64
	markedRead    int64 // the highest seq this chat marked read
	composing     time.Time
	pauseTimer    *time.Timer
	peerTyping    *time.Timer
}

func (ch *chatSession) connected(conn *nclient.Conn) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	ch.conn = conn
	if conn != nil && !ch.synced {
		ch.synced = true
		close(ch.ready)
	}
}

// showHistory prints the latest n messages and marks the peer's read.
func (ch *chatSession) showHistory(ctx context.Context, n int) error {
	msgs, err := latest(ctx, ch.c, ch.conv, n)
	if err != nil {
		return err
	}
	ch.mu.Lock()
	for _, m := range msgs {
		if m.Deleted {
			m.Content = "(deleted)"
		}
		switch m.Status {
		case nclient.StatusRead:
			ch.readUpTo = max(ch.readUpTo, m.Seq)
			ch.deliveredUpTo = max(ch.deliveredUpTo, m.Seq)
		case nclient.StatusDelivered:
			ch.deliveredUpTo = max(ch.deliveredUpTo, m.Seq)
		}
		ch.showLocked(m.Seq, m.SenderID, m.Content, m.ServerTS)
	}
	ch.mu.Unlock()
	ch.markRead(ctx)
	return nil
}

// showLocked prints a message unless it is on screen already.
func (ch *chatSession) showLocked(seq int64, sender, text string, ts int64) {
	if ch.shown[seq] != nil {
		return
	}
	l := &chatLine{sender: sender, text: text, ts: ts}
	if sender == ch.me {
		l.status = ch.statusLocked(seq)
	}
	ch.shown[seq] = l
	ch.ui.printf("%s", ch.render(l))
}

func (ch *chatSession) statusLocked(seq int64) string {
	switch {
	case seq <= ch.readUpTo:
		return nclient.StatusRead
	case seq <= ch.deliveredUpTo:
		return nclient.StatusDelivered
	}
	return nclient.StatusSent
}

func (ch *chatSession) render(l *chatLine) string {
	who := ch.peer.Username
	if l.sender == ch.me {
		who = "you"
	}
	s := fmt.Sprintf("%s %s: %s", time.UnixMilli(l.ts).Local().Format("15:04"), who, l.text)
	if l.status != "" && ch.peer.UserID != ch.me {
		s += " " + ticks(l.status, ch.ui.color())
	}
	return s
}

// acked shows a message the caller sent (unless its echo came first).
func (ch *chatSession) acked(ack nclient.Ack, text string) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	ch.showLocked(ack.Seq, ch.me, text, ack.ServerTS)
}

// markRead marks the peer's messages on screen read, once each.
func (ch *chatSession) markRead(ctx context.Context) {
	ch.mu.Lock()
	var top int64
	for seq, l := range ch.shown {
		if l.sender != ch.me && seq > top {
			top = seq
		}
	}
	if top <= ch.markedRead {
		ch.mu.Unlock()
		return
	}
	ch.markedRead = top
	ch.mu.Unlock()
	// Over REST, so that it is applied even if the chat ends at once.
	id := schema.MessageID(ch.conv, top)
	if err := ch.c.SetStatus(ctx, id, nclient.StatusRead); err != nil && ctx.Err() == nil {
		ch.ui.printf("(could not mark read: %v)", err)
	}
}

// event handles one frame of the stream.
func (ch *chatSession) event(_ *nclient.Conn, ev nclient.Event) error {
	switch ev.Type {
	case "message":
		if ev.ConversationID != ch.conv {
			ch.ui.printf("(%s wrote: %s  —  natter chat @%s)", ch.names.name(context.Background(), ev.SenderID), short(ev.Content, 40), ch.names.name(context.Background(), ev.SenderID))
			return nil
		}
		ch.mu.Lock()
		ch.showLocked(ev.Seq, ev.SenderID, ev.Content, ev.ServerTS)
		if ev.SenderID != ch.me {
			ch.stopPeerTypingLocked()
		}
		ch.mu.Unlock()
		if ev.SenderID != ch.me {
			go ch.markRead(context.Background())
		}
	case "receipt":
		if ev.ConversationID != ch.conv || ev.UserID != ch.peer.UserID || ch.peer.UserID == ch.me {
			return nil
		}
		ch.mu.Lock()
		defer ch.mu.Unlock()
		if ev.Status == nclient.StatusRead {
			ch.readUpTo = max(ch.readUpTo, ev.Seq)
		}
		ch.deliveredUpTo = max(ch.deliveredUpTo, ev.Seq)
		// Reprint the caller's latest message the receipt covers, with
		// its new ticks (a terminal cannot redraw what scrolled away).
		for seq := ev.Seq; seq > 0; seq-- {
			l := ch.shown[seq]
			if l == nil || l.sender != ch.me {
				continue
			}
			if st := ch.statusLocked(seq); st != l.status {
				l.status = st
				ch.ui.printf("%s", ch.render(l))
			}
			break
		}
	case "deleted":
		if ev.ConversationID != ch.conv {
			return nil
		}
		ch.mu.Lock()
		if l := ch.shown[ev.Seq]; l != nil && ev.For == "everyone" {
			l.text = "(deleted)"
		}
		ch.mu.Unlock()
		ch.ui.printf("(message #%d deleted for %s)", ev.Seq, ev.For)
	case "typing":
		if ev.ConversationID != ch.conv || ev.UserID != ch.peer.UserID {
			return nil
		}
		ch.mu.Lock()
		defer ch.mu.Unlock()
		if ev.State != "composing" {
			ch.stopPeerTypingLocked()
			return nil
		}
		ch.ui.typing(ch.peer.Username + " is typing…")
		if ch.peerTyping != nil {
			ch.peerTyping.Stop()
		}
		ch.peerTyping = time.AfterFunc(typingShow, func() {
			ch.mu.Lock()
			defer ch.mu.Unlock()
			ch.stopPeerTypingLocked()
		})
	case "error":
		ch.ui.printf("(server: %s %s)", ev.Code, ev.Message)
	}
	return nil
}

func (ch *chatSession) stopPeerTypingLocked() {
	if ch.peerTyping != nil {
		ch.peerTyping.Stop()
		ch.peerTyping = nil
	}
	ch.ui.typing("")
}

// typed is called on each key (key true) and when a line is sent (false):
// it tells the peer composing, then paused when the keys stop.
func (ch *chatSession) typed(key bool) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	conn := ch.conn
	if ch.pauseTimer != nil {
		ch.pauseTimer.Stop()
		ch.pauseTimer = nil
	}
	if !key {
		ch.composing = time.Time{} // the message itself ends "typing"
		return
	}
	if conn != nil && time.Since(ch.composing) > typingRepeat {
		ch.composing = time.Now()
		go func() { _ = conn.Typing(ch.conv, "composing") }()
	}
	ch.pauseTimer = time.AfterFunc(typingPause, func() {
		ch.mu.Lock()
		defer ch.mu.Unlock()
		if !ch.composing.IsZero() && ch.conn != nil {
			ch.composing = time.Time{}
			conn := ch.conn
			go func() { _ = conn.Typing(ch.conv, "paused") }()
		}
	})
}

// chatUI is the chat's screen and keyboard.
type chatUI interface {
	printf(format string, args ...any)
	// typing shows (or, with "", clears) the peer's typing.
	typing(s string)
	readLine() (string, error)
	color() bool
	close()
}

func newChatUI(cio cliIO, ch *chatSession) (chatUI, error) {
	in, inOK := cio.in.(*os.File)
	out, outOK := cio.out.(*os.File)
	if inOK && outOK && term.IsTerminal(int(in.Fd())) && term.IsTerminal(int(out.Fd())) {
		old, err := term.MakeRaw(int(in.Fd()))
		if err != nil {
			return nil, fmt.Errorf("put the terminal in raw mode: %w", err)
		}
		t := term.NewTerminal(struct {
			io.Reader
			io.Writer
		}{in, out}, "> ")
		t.AutoCompleteCallback = func(string, int, rune) (string, int, bool) {
			ch.typed(true)
			return "", 0, false
		}
		if w, h, err := term.GetSize(int(in.Fd())); err == nil {
			_ = t.SetSize(w, h)
		}
		return &termUI{t: t, fd: int(in.Fd()), old: old, colour: os.Getenv("NO_COLOR") == ""}, nil
	}
	return &plainUI{in: bufio.NewScanner(cio.in), out: cio.out}, nil
}

// termUI is a terminal in raw mode with x/term's line editor, which
// redraws the prompt and the line being typed below what is printed.
type termUI struct {
	t      *term.Terminal
	fd     int
	old    *term.State
	colour bool
	once   sync.Once
}

func (u *termUI) printf(format string, args ...any) {
	fmt.Fprintf(u.t, format+"\n", args...)
}

func (u *termUI) typing(s string) {
	if s == "" {
		u.t.SetPrompt("> ")
	} else {
		u.t.SetPrompt(s + " > ")
	}
	// SetPrompt shows on the next redraw; an empty write makes one.
	_, _ = u.t.Write(nil)
}

func (u *termUI) readLine() (string, error) {
	line, err := u.t.ReadLine()
	if err == nil {
		// The editor leaves "> line" on screen: the sent message
		// replaces it.
		_, _ = u.t.Write([]byte("\x1b[1A\x1b[2K"))
	}
	return line, err
}

func (u *termUI) color() bool { return u.colour }

func (u *termUI) close() {
	u.once.Do(func() { _ = term.Restore(u.fd, u.old) })
}

// plainUI reads lines and prints lines: a pipe, a script.
type plainUI struct {
	in  *bufio.Scanner
	mu  sync.Mutex
	out io.Writer
}

func (u *plainUI) printf(format string, args ...any) {
	u.mu.Lock()
	defer u.mu.Unlock()
	fmt.Fprintf(u.out, format+"\n", args...)
}

func (u *plainUI) typing(s string) {
	if s != "" {
		u.printf("(%s)", s)
	}
}

func (u *plainUI) readLine() (string, error) {
	if u.in.Scan() {
		return u.in.Text(), nil
	}
	if err := u.in.Err(); err != nil {
		return "", err
	}
	return "", io.EOF
}

func (u *plainUI) color() bool { return false }
func (u *plainUI) close()      {}
