package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	nclient "github.com/natter-chat/natter/client"
)

// follower keeps one device's event stream open: it dials with the last
// cursor it processed, hands each frame to handle, and after a network
// loss or a server restart reconnects with back-off and that cursor, so
// the server replays exactly what was missed: nothing twice, nothing
// lost. An expired token is refreshed; a revoked one ends the follow.
type follower struct {
	c *nclient.Client
	// cursor is the last durable event handled ("" for none: start now).
	cursor string
	// handle gets every frame; after it returns nil for a durable event,
	// that event's cursor is the one to resume from. An error ends run.
	handle func(conn *nclient.Conn, ev nclient.Event) error
	// saveCursor, if set, stores the cursor after each durable event.
	saveCursor func(cursor string) error
	// connected, if set, is called with each new connection once it is
	// synced, and with nil when it is lost.
	connected func(conn *nclient.Conn)
	// notice tells the person what the connection does.
	notice func(format string, args ...any)
}

// Back-off between reconnects: from the first up to the last, doubling,
// with jitter so that clients of a restarted server spread out.
const (
	followBackoffMin = 250 * time.Millisecond
	followBackoffMax = 15 * time.Second
)

// errCursorRefused is the server refusing the stored cursor: expired
// (older than the retained events) or never issued by this server.
type errCursorRefused struct{ code string }

func (e errCursorRefused) Error() string { return "cursor refused: " + e.code }

// run follows until ctx ends (nil) or the login is no longer valid.
func (f *follower) run(ctx context.Context) error {
	backoff := followBackoffMin
	sleep := func() bool {
		d := backoff/2 + rand.N(backoff/2+1)
		backoff = min(2*backoff, followBackoffMax)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(d):
			return true
		}
	}
	for ctx.Err() == nil {
		conn, err := f.c.Dial(ctx, f.cursor)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			switch nclient.Code(err) {
			case "unauthorized":
				return errors.New("this device was revoked or its token is no longer valid: run natter login USERNAME")
			case "token_expired":
				return explain(err)
			case "cursor_expired", "bad_request":
				if f.cursor != "" {
					f.resetCursor(nclient.Code(err))
					continue
				}
			}
			f.notice("offline (%v); retrying", err)
			if !sleep() {
				return nil
			}
			continue
		}
		stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
		synced, err := f.read(conn)
		stop()
		_ = conn.Close()
		if f.connected != nil && synced {
			f.connected(nil)
		}
		if ctx.Err() != nil {
			return nil
		}
		if synced {
			backoff = followBackoffMin
		}
		var refused errCursorRefused
		switch {
		case errors.As(err, &refused):
			f.resetCursor(refused.code)
			continue
		case errors.As(err, new(handleError)):
			return errors.Unwrap(err)
		}
		switch nclient.CloseCode(err) {
		case nclient.CloseUnauthorized:
			return errors.New("this device was revoked or its token is no longer valid: run natter login USERNAME")
		case nclient.CloseTokenExpired:
			continue // Dial refreshes the token (and says if it cannot)
		case nclient.CloseCursorExpired:
			f.resetCursor("cursor_expired")
			continue
		}
		f.notice("connection lost (%v); reconnecting", err)
		if !sleep() {
			return nil
		}
	}
	return nil
}

// handleError carries an error of handle out of read.
type handleError struct{ err error }

func (e handleError) Error() string { return e.err.Error() }
func (e handleError) Unwrap() error { return e.err }

// read handles one connection's frames until it fails; synced says
// whether it got as far as the synced barrier.
func (f *follower) read(conn *nclient.Conn) (synced bool, err error) {
	for {
		ev, err := conn.Read()
		if err != nil {
			return synced, err
		}
		if ev.Type == "error" && ev.Ref == "" && !synced && (ev.Code == "cursor_expired" || ev.Code == "bad_request") && f.cursor != "" {
			return false, errCursorRefused{ev.Code}
		}
		if err := f.handle(conn, ev); err != nil {
			return synced, handleError{err}
		}
		if ev.Durable() {
			f.cursor = ev.Cursor
			if f.saveCursor != nil {
				if err := f.saveCursor(ev.Cursor); err != nil {
					return synced, handleError{err}
				}
			}
		}
		if ev.Type == "synced" {
			synced = true
			if f.cursor == "" && ev.Cursor != "" {
				// Resume from here next time even if nothing arrives.
				f.cursor = ev.Cursor
				if f.saveCursor != nil {
					if err := f.saveCursor(ev.Cursor); err != nil {
						return synced, handleError{err}
					}
				}
			}
			if f.connected != nil {
				f.connected(conn)
			}
		}
	}
}

// resetCursor drops a cursor the server refused: what it covered is in
// the history (natter history), and the follow goes on from now.
func (f *follower) resetCursor(code string) {
	what := "is older than what the server keeps"
	if code == "bad_request" {
		what = "is unknown to this server (was its data reset?)"
	}
	f.notice("the stored cursor %s; following from now (missed messages: natter history USER)", what)
	f.cursor = ""
	if f.saveCursor != nil {
		_ = f.saveCursor("")
	}
}

// noticef makes a notice function that prefixes the person's stderr.
func noticef(cio cliIO) func(string, ...any) {
	return func(format string, args ...any) { fmt.Fprintf(cio.err, "natter: "+format+"\n", args...) }
}
