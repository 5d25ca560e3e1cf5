// Package chat is natter's application: the use cases of the client
// contract and their rules (who may send to whom, what a participant may
// see, how a device catches up), transport-neutral. The transports in
// gateway (WebSocket, REST, long-poll, later NATS-native) authenticate,
// decode, call chat and encode; every one of them gets the same rules.
//
// chat is made of small services, each with its own state: Accounts
// (users, devices, tokens, revocations), Relations (blocks, privacy),
// Messages (send, status, delete, history, conversations), Sync (the
// barrier and replay), Presence (who is online, typing) and Sessions
// (the open connections of this node). Core builds them and runs their
// goroutines. Errors carry the contract's codes, not statuses (errors.go).
package chat

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/natter-chat/natter/chat/auth"
	"github.com/natter-chat/natter/store"
	"github.com/natter-chat/natter/streams"
)

// Store is what chat reads and writes directly; messages reach the store
// through JetStream and the persistence consumer.
type Store interface {
	store.Accounts
	store.Devices
	store.Blocks
	store.Conversations
	store.Receipts
	MessageByClientID(ctx context.Context, senderID, clientMessageID string) (store.Message, error)
	Message(ctx context.Context, conversationID string, seq int64) (store.Message, error)
	History(ctx context.Context, conversationID, viewerID string, beforeSeq int64, limit int) ([]store.HistoryEntry, error)
	LastSeq(ctx context.Context, conversationID string) (int64, error)
}

// Config tunes chat. The zero value of each field means its documented
// default, filled in by withDefaults (and nowhere else).
type Config struct {
	// RateLimit turns the per-user send limit on.
	RateLimit bool
	// SendBurst and SendRate: a burst, then a rate per second (default
	// 100 and 20, the contract's).
	SendBurst int
	SendRate  float64
	// SoleSequencer says this node sequences every message there is (the
	// single-node serve): it may then skip the store's dedupe read for
	// ids it has surely never seen. Never set it with other nodes.
	SoleSequencer bool
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.SendBurst == 0 {
		c.SendBurst = 100
	}
	if c.SendRate == 0 {
		c.SendRate = 20
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Core holds the services of one node.
type Core struct {
	Accounts  *Accounts
	Relations *Relations
	Messages  *Messages
	Sync      *Sync
	Presence  *Presence
	Sessions  *Sessions

	revoke  *streams.Revocations
	runners []func(context.Context) error

	runOnce sync.Once
	running chan struct{}
}

// New builds the services over a NATS connection whose streams exist. It
// sets no handler on nc: cmd wires nc's reconnect callback to
// Core.Sync.Reconnected. Run starts the goroutines.
func New(ctx context.Context, cfg Config, st Store, nc *nats.Conn, signer *auth.Signer) (*Core, error) {
	cfg = cfg.withDefaults()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	conv, err := js.Stream(ctx, streams.StreamConv)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", streams.StreamConv, err)
	}
	wm := streams.NewWatermark(js, 2*time.Millisecond)
	c := &Core{running: make(chan struct{})}
	c.Sessions = newSessions()
	if c.revoke, err = streams.NewRevocations(ctx, js, c.Sessions.CloseDevice); err != nil {
		return nil, err
	}
	notices := streams.NewBlockNotices(nc)
	c.Relations = newRelations(st, notices)
	c.Accounts = newAccounts(st, signer, c.revoke, c.Sessions)
	seq := streams.NewSequencer(js, conv, st)
	limit := NewLimiter(cfg.RateLimit, cfg.SendRate, cfg.SendBurst)
	c.Messages = newMessages(st, seq, streams.NewConvWriter(js), wm, limit, c.Relations)
	c.Sync = newSync(st, wm, streams.NewInboxReader(nc))
	c.Presence = newPresence(st, c.Sessions, c.Relations, streams.NewEphemeral(nc))

	c.runners = []func(context.Context) error{
		c.revoke.Run,
		func(ctx context.Context) error { return notices.Run(ctx, c.Relations.forget) },
		limit.Run,
		seq.Run,
	}
	if l, ok := st.(clientIDLister); ok && cfg.SoleSequencer {
		c.runners = append(c.runners, func(ctx context.Context) error {
			return c.Messages.seen.load(ctx, wm, l, cfg.Logger)
		})
	}
	return c, nil
}

// Run runs the services' goroutines until ctx ends, then returns once
// they all have. Call it once.
func (c *Core) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	errs := make(chan error, len(c.runners))
	c.runOnce.Do(func() { close(c.running) })
	for _, run := range c.runners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run(ctx); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// RevocationsLoaded is closed once every stored revocation is known:
// nothing authenticated may be served before.
func (c *Core) RevocationsLoaded() <-chan struct{} { return c.revoke.Loaded() }
