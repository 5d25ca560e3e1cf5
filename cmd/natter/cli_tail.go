package main

import (
	"context"
	"fmt"
	"io"
	"time"

	nclient "github.com/natter-chat/natter/client"
)

// cliTail follows the inbox over WebSocket and prints each event. It
// resumes from the cursor it stored in the config directory when it last
// ran (or, the first time, from now), and reconnects by itself after a
// network loss or a server restart; it prints nothing twice.
func cliTail(ctx context.Context, args []string, cio cliIO) error {
	p := newPersonFlags("tail", "[--json] [--with USER|@username] [--no-receipts]")
	with := p.fs.String("with", "", "only the conversation with this user (its own stored cursor)")
	noReceipts := p.fs.Bool("no-receipts", false, "do not tell senders their messages were delivered to this device")
	if _, err := p.parse(args, 0, 0); err != nil {
		return err
	}
	c, st, err := p.session()
	if err != nil {
		return err
	}
	creds, err := st.load()
	if err != nil || creds == nil {
		return errNotLoggedIn
	}
	cursorName, convFilter := "inbox", ""
	if *with != "" {
		peer, err := resolveUser(ctx, c, *with)
		if err != nil {
			return err
		}
		if convFilter, err = c.ConversationWith(ctx, peer.UserID); err != nil {
			return explain(err)
		}
		cursorName = "conv-" + convFilter
	}
	pr := &eventPrinter{out: cio.out, json: *p.json, names: newNames(c), me: c.Session().UserID, color: isTerminal(cio.out)}
	// Delivered receipts: one per conversation for the replay (a status
	// covers every earlier message), then one per live message.
	var replayed map[string]nclient.Event
	live, followed := false, false
	f := &follower{
		c:      c,
		cursor: st.loadCursor(cursorName, creds),
		notice: noticef(cio),
		saveCursor: func(cursor string) error {
			return st.saveCursor(cursorName, creds, cursor)
		},
		handle: func(conn *nclient.Conn, ev nclient.Event) error {
			switch ev.Type {
			case "synced":
				if !*noReceipts {
					for _, m := range replayed {
						_ = conn.Receipt(m.MessageID, nclient.StatusDelivered)
					}
				}
				if !followed {
					noticef(cio)("synced; following live (Ctrl-C to stop)")
				}
				replayed, live, followed = nil, true, true
				return nil
			case "ack", "pong":
				return nil
			}
			if convFilter != "" && ev.ConversationID != convFilter {
				return nil
			}
			if ev.Type == "message" && ev.SenderID != pr.me && !*noReceipts {
				if live {
					_ = conn.Receipt(ev.MessageID, nclient.StatusDelivered)
				} else {
					if replayed == nil {
						replayed = map[string]nclient.Event{}
					}
					if ev.Seq > replayed[ev.ConversationID].Seq {
						replayed[ev.ConversationID] = ev
					}
				}
			}
			return pr.print(ctx, ev)
		},
		connected: func(conn *nclient.Conn) {
			if conn == nil {
				live = false
			}
		},
	}
	return f.run(ctx)
}

// eventPrinter writes events for a person (one line each) or, with json,
// as the server sent them, one object per line.
type eventPrinter struct {
	out   io.Writer
	json  bool
	names *names
	me    string
	color bool
}

func (p *eventPrinter) print(ctx context.Context, ev nclient.Event) error {
	if p.json {
		_, err := fmt.Fprintf(p.out, "%s\n", ev.Raw)
		return err
	}
	line := p.line(ctx, ev)
	if line == "" {
		return nil
	}
	_, err := fmt.Fprintln(p.out, line)
	return err
}

func (p *eventPrinter) line(ctx context.Context, ev nclient.Event) string {
	ts := func(ms int64) string {
		if ms == 0 {
			ms = time.Now().UnixMilli()
		}
		return time.UnixMilli(ms).Local().Format("15:04:05")
	}
	n := func(id string) string { return p.names.name(ctx, id) }
	switch ev.Type {
	case "message":
		to := n(ev.RecipientID)
		if ev.MessageType == nclient.TypeGroup {
			to = "group " + ev.RecipientID
		}
		return fmt.Sprintf("%s %s → %s: %s  (#%d)", ts(ev.ServerTS), n(ev.SenderID), to, ev.Content, ev.Seq)
	case "receipt":
		who := "everyone"
		if ev.UserID != "" {
			who = n(ev.UserID)
		}
		mark := ticks(ev.Status, p.color)
		if p.color { // colour alone does not say which
			mark += " " + ev.Status
		}
		return fmt.Sprintf("%s %s by %s, up to #%d", ts(ev.TS), mark, who, ev.Seq)
	case "deleted":
		return fmt.Sprintf("%s message #%d deleted for %s", ts(0), ev.Seq, ev.For)
	case "typing":
		if ev.State == "composing" {
			return fmt.Sprintf("%s %s is typing…", ts(0), n(ev.UserID))
		}
		return fmt.Sprintf("%s %s stopped typing", ts(0), n(ev.UserID))
	case "presence":
		return fmt.Sprintf("%s %s is %s", ts(0), n(ev.UserID), ev.Status)
	case "group":
		who := ""
		if ev.UserID != "" {
			who = " " + n(ev.UserID)
		}
		return fmt.Sprintf("%s group %s: %s%s by %s", ts(ev.TS), ev.GroupID, ev.Change, who, n(ev.By))
	case "error":
		return fmt.Sprintf("%s error %d %s: %s", ts(0), ev.ErrorStatus, ev.Code, ev.Message)
	}
	return ""
}
