package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jedib0t/go-pretty/v6/table"
	"golang.org/x/term"

	nclient "github.com/natter-chat/natter/client"
)

// cliSend sends one message over REST. The client_message_id is a new
// UUID, and a network failure is retried with the same one, so the
// message is stored once whatever happens to the answers.
func cliSend(ctx context.Context, args []string, cio cliIO) error {
	p := newPersonFlags("send", "USER|@username TEXT...")
	pos, err := p.parse(args, 2, -1)
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
	ack, err := sendOnce(ctx, c, nclient.SendRequest{ClientMessageID: uuid.NewString(), RecipientID: peer.UserID, Content: strings.Join(pos[1:], " ")})
	if err != nil {
		return explain(err)
	}
	if *p.json {
		return printJSON(cio.out, ack)
	}
	fmt.Fprintf(cio.out, "seq %d %s (message %s to %s)\n", ack.Seq, ack.Status, ack.MessageID, peer.Username)
	return nil
}

// sendOnce sends req, retrying what may not have reached the server (a
// network error, a 5xx, a rate limit) for up to a minute with the same
// client_message_id: the server answers a retry with the original.
func sendOnce(ctx context.Context, c *nclient.Client, req nclient.SendRequest) (nclient.Ack, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	wait := 200 * time.Millisecond
	for {
		ack, err := c.Send(ctx, req)
		var retry bool
		if e, ok := asClientError(err); ok {
			retry = e.Status >= 500 || e.Code == "rate_limited"
			wait = max(wait, e.RetryAfter)
		} else {
			retry = err != nil
		}
		if !retry {
			return ack, err
		}
		select {
		case <-ctx.Done():
			return ack, fmt.Errorf("%w (gave up after %v; sending again is safe: natter never doubles a retry, but this is a new message)", err, time.Minute)
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

func asClientError(err error) (*nclient.Error, bool) {
	e, ok := err.(*nclient.Error)
	return e, ok && e != nil
}

// cliConversations prints the conversation list, most recent first.
func cliConversations(ctx context.Context, args []string, cio cliIO) error {
	p := newPersonFlags("conversations", "[--limit N]")
	limit := p.fs.Int("limit", 50, "at most this many conversations")
	if _, err := p.parse(args, 0, 0); err != nil {
		return err
	}
	c, _, err := p.session()
	if err != nil {
		return err
	}
	var all []nclient.Conversation
	cursor := ""
	for len(all) < *limit {
		page, err := c.Conversations(ctx, cursor, min(*limit-len(all), 100))
		if err != nil {
			return explain(err)
		}
		all = append(all, page.Conversations...)
		if cursor = page.NextCursor; cursor == "" || len(page.Conversations) == 0 {
			break
		}
	}
	if *p.json {
		if all == nil {
			all = []nclient.Conversation{}
		}
		return printJSON(cio.out, all)
	}
	if len(all) == 0 {
		fmt.Fprintln(cio.out, "no conversations yet: natter send @USERNAME hello")
		return nil
	}
	n := newNames(c)
	t := newTable(cio.out)
	t.AppendHeader(table.Row{"peer", "last message", "unread", "when"})
	for _, cv := range all {
		peer := cv.Title
		if cv.Type == nclient.TypeUser && cv.PeerID != "" {
			peer = n.name(ctx, cv.PeerID)
			if peer == "you" {
				peer = "you (notes)"
			}
		}
		unread := ""
		if cv.UnreadCount > 0 {
			unread = fmt.Sprint(cv.UnreadCount)
		}
		t.AppendRow(table.Row{peer, short(cv.LastMessagePreview, 50), unread, when(cv.LastMessageAt)})
	}
	t.Render()
	return nil
}

// cliHistory prints a conversation's latest messages, oldest first, with
// the ticks of the caller's own.
func cliHistory(ctx context.Context, args []string, cio cliIO) error {
	p := newPersonFlags("history", "USER|@username [--limit N]")
	limit := p.fs.Int("limit", 20, "at most this many messages, the latest")
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
	msgs, err := latest(ctx, c, conv, *limit)
	if err != nil {
		return explain(err)
	}
	if *p.json {
		if msgs == nil {
			msgs = []nclient.Message{}
		}
		return printJSON(cio.out, msgs)
	}
	if len(msgs) == 0 {
		fmt.Fprintf(cio.out, "no messages with %s yet: natter send @%s hello\n", peer.Username, peer.Username)
		return nil
	}
	n := newNames(c)
	color := isTerminal(cio.out)
	t := newTable(cio.out)
	t.AppendHeader(table.Row{"seq", "when", "from", "message", ""})
	for _, m := range msgs {
		text := m.Content
		if m.Deleted {
			text = "(deleted)"
		}
		tick := ""
		if m.SenderID == c.Session().UserID {
			tick = ticks(m.Status, color)
		}
		t.AppendRow(table.Row{m.Seq, when(m.ServerTS), n.name(ctx, m.SenderID), short(text, 60), tick})
	}
	t.Render()
	return nil
}

// latest returns up to limit of a conversation's latest messages, oldest
// first.
func latest(ctx context.Context, c *nclient.Client, conv string, limit int) ([]nclient.Message, error) {
	var msgs []nclient.Message
	cursor := ""
	for len(msgs) < limit {
		page, err := c.History(ctx, conv, cursor, min(limit-len(msgs), 100))
		if err != nil {
			return nil, err
		}
		msgs = append(msgs, page.Messages...)
		if cursor = page.NextCursor; cursor == "" || len(page.Messages) == 0 {
			break
		}
	}
	slices.Reverse(msgs)
	return msgs, nil
}

// ticks are WhatsApp's: one grey ✓ sent, two grey ✓✓ delivered, two blue
// ✓✓ read. Without colour (not a terminal) the status is spelled out.
func ticks(status string, color bool) string {
	const grey, blue, reset = "\x1b[90m", "\x1b[34m", "\x1b[0m"
	switch status {
	case nclient.StatusRead:
		if color {
			return blue + "✓✓" + reset
		}
		return "✓✓ read"
	case nclient.StatusDelivered:
		if color {
			return grey + "✓✓" + reset
		}
		return "✓✓ delivered"
	case nclient.StatusSent:
		if color {
			return grey + "✓" + reset
		}
		return "✓ sent"
	}
	return ""
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd())) && os.Getenv("NO_COLOR") == ""
}

func newTable(out io.Writer) table.Writer {
	t := table.NewWriter()
	t.SetOutputMirror(out)
	t.SetStyle(table.StyleLight)
	return t
}
