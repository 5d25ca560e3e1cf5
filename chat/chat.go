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
	store.Push
	MessageByClientID(ctx context.Context, senderID, clientMessageID string) (store.Message, error)
	Message(ctx context.Context, conversationID string, seq int64) (store.Message, error)
	History(ctx context.Context, conversationID, viewerID string, beforeSeq int64, limit int) ([]store.HistoryEntry, error)
	LastSeq(ctx context.Context, conversationID string) (int64, error)
}

// Config tunes chat. The zero value of each field means its documented
// default, filled in by withDefaults (and nowhere else).
type Config struct {
	// RateLimit turns the per-user send limit and the login back-off on.
	RateLimit bool
	// SendBurst and SendRate: a burst, then a rate per second (default
	// 100 and 20, the contract's).
	SendBurst int
	SendRate  float64
	// SoleSequencer says this node sequences every message there is (the
	// single-node serve): it may then skip the store's dedupe read for
	// ids it has surely never seen. Never set it with other nodes.
	SoleSequencer bool
	// Observer is told of sends and refusals (metrics); default none.
	Observer Observer
	// Logger defaults to slog.Default().
	Logger *slog.Logger

	// NodeName prefixes this node's presence id (a fresh random id per
	// start, so a restarted node never revives its predecessor's lease).
	NodeName string
	// PresenceLease is the TTL of this node's presence lease, renewed
	// every third of it (default 15 s): a crashed node's users read
	// offline within it.
	PresenceLease time.Duration
	// PollIdle is how long a long-polling device stays online after its
	// last poll ended (default 55 s: 30 s plus a 25 s heartbeat, as a
	// silent WebSocket).
	PollIdle time.Duration
	// MaxPresenceSubscriptions caps the users one connection watches
	// (default 500).
	MaxPresenceSubscriptions int
	// TypingTTL: a composing not refreshed within it turns into paused
	// (default 5 s).
	TypingTTL time.Duration
}

func (c Config) withDefaults() Config {
	if c.Observer == nil {
		c.Observer = nopObserver{}
	}
	if c.SendBurst == 0 {
		c.SendBurst = 100
	}
	if c.SendRate == 0 {
		c.SendRate = 20
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.PresenceLease == 0 {
		c.PresenceLease = 15 * time.Second
	}
	if c.PollIdle == 0 {
		c.PollIdle = 55 * time.Second
	}
	if c.MaxPresenceSubscriptions == 0 {
		c.MaxPresenceSubscriptions = 500
	}
	if c.TypingTTL == 0 {
		c.TypingTTL = 5 * time.Second
	}
	return c
}

// Core holds the services of one node.
type Core struct {
	Accounts  *Accounts
	Relations *Relations
	Messages  *Messages
	Groups    *Groups
	Sync      *Sync
	Presence  *Presence
	Sessions  *Sessions
	// Limits are the per-user limits of every frame kind but send.
	Limits *Limits
	Polls  *PollSessions
	Push   *Push

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
	guard := NewLoginGuard(LoginGuardConfig{On: cfg.RateLimit}, cfg.Logger)
	c.Accounts = newAccounts(st, signer, c.revoke, c.Sessions, guard)
	seq := streams.NewSequencer(js, conv, st)
	limit := NewLimiter(cfg.RateLimit, cfg.SendRate, cfg.SendBurst).OnRefuse(func() { cfg.Observer.RateLimited("send") })
	c.Messages = newMessages(st, seq, streams.NewConvWriter(js), wm, limit, c.Relations)
	c.Messages.obs = cfg.Observer
	c.Groups = newGroups(st, seq, c.Relations)
	c.Messages.groups = c.Groups
	// Decimal cursors of before are at most the stream's last sequence now.
	_, legacyMax, err := wm.InboxRange(ctx)
	if err != nil {
		return nil, fmt.Errorf("event cursors: %w", err)
	}
	c.Sync = newSync(st, wm, streams.NewInboxReader(nc), newCursorCodec(signer.DeriveKey("event cursors"), legacyMax))
	pkv, err := streams.NewPresenceKV(ctx, js)
	if err != nil {
		return nil, err
	}
	reg := newRegistry(pkv, newNodeID(cfg.NodeName), cfg.PresenceLease, c.Sessions, cfg.Logger)
	c.Sessions.onChange = reg.changed
	live := streams.NewEphemeral(nc)
	c.Presence = newPresence(st, reg, c.Relations, live, cfg.MaxPresenceSubscriptions, cfg.TypingTTL)
	c.Polls = newPollSessions(cfg.PollIdle, c.Sessions, c.Presence, live)
	c.Limits = NewLimits(cfg.RateLimit)
	for kind, lim := range c.Limits.byKind {
		lim.OnRefuse(func() { cfg.Observer.RateLimited(kind) })
	}
	c.Messages.limits, c.Presence.limits = c.Limits, c.Limits
	c.Push = newPush(st)

	c.runners = []func(context.Context) error{
		c.revoke.Run,
		func(ctx context.Context) error {
			return notices.Run(ctx, func(pair string) { c.Relations.forget(pair); c.Presence.blockChanged(pair) })
		},
		limit.Run,
		c.Limits.Run,
		guard.Run,
		seq.Run,
		reg.Run,
		c.Presence.typing.Run,
		c.Polls.Run,
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
