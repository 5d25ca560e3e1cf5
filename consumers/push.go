package consumers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/natter-chat/natter/push"
	"github.com/natter-chat/natter/schema"
	"github.com/natter-chat/natter/store"
	"github.com/natter-chat/natter/streams"
)

// PushStore is what the push worker reads from the store.
type PushStore interface {
	UserByID(ctx context.Context, id string) (store.User, error)
	PushTokens(ctx context.Context, userID string) ([]store.PushToken, error)
	DropPushToken(ctx context.Context, deviceID, token string) error
	MutedUntil(ctx context.Context, userID, conversationID string) (int64, error)
	QuietHours(ctx context.Context, userID string) (store.QuietHours, error)
	Conversations(ctx context.Context, userID string, after store.ConversationPage, limit int) ([]store.ConversationSummary, error)
}

// Presence tells whether a user has a device connected: such a user gets
// the message on that device and no push.
type Presence interface {
	Online(ctx context.Context, userID string) (bool, error)
}

// PushOptions tune the push worker. Zero values mean the defaults.
type PushOptions struct {
	Options
	// Collapse is the shortest time between two pushes of one
	// conversation to one user (default 10 s): the first message of a
	// burst is pushed, the rest of the burst is not.
	Collapse time.Duration
	// HideContent sends GenericBody instead of the message's text.
	HideContent bool
	// MaxAge: a message older than this when it could be pushed (the
	// provider was down that long) is not pushed (default 1 h).
	MaxAge time.Duration
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
	// Cursor renders user's cursor for an INBOX sequence, as every
	// transport does (chat.Sync.FormatCursor: opaque, per user); default
	// the sequence in decimal.
	Cursor func(user string, seq uint64) string
}

// GenericBody is the text of a push under --push-content hidden.
const GenericBody = "New message"

// maxPreview bounds the text of a push: APNs takes 4 KiB of payload in
// all, and a lock screen shows a line or two.
const maxPreview = 256

// maxBadgePages bounds the conversation pages read to count a user's
// unread messages (100 conversations a page).
const maxBadgePages = 10

func (o PushOptions) withDefaults() PushOptions {
	if o.RetryDelay <= 0 {
		// A provider down (gorush restarting) is waited out for about
		// three minutes before the push is dead-lettered, not 19 s.
		o.RetryDelay = time.Second
	}
	o.Options = o.Options.withDefaults()
	if o.Collapse <= 0 {
		o.Collapse = 10 * time.Second
	}
	if o.MaxAge <= 0 {
		o.MaxAge = time.Hour
	}
	if o.Cursor == nil {
		o.Cursor = func(_ string, seq uint64) string { return strconv.FormatUint(seq, 10) }
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Push sends a notification for each message event in INBOX to the
// recipient's registered devices, when none of them is connected; never
// to the sender, not in muted conversations or quiet hours, one per
// conversation per Collapse. It never sends twice for a (message, device):
// what was sent is recorded in the natter_push bucket before the event is
// acknowledged, and checked on every (re)delivery. A provider that fails
// (non-2xx, timeout) has the event retried with back-off, then
// dead-lettered; a dead token is removed from the store.
//
// Decisions not to push that rest on state which may change (online,
// muted, quiet hours) are recorded too, so that an event redelivered
// after a crash (JetStream may lose a consumer's recent acks to kill -9)
// is decided the same way. The one window left: a crash after the
// provider accepted a push and before its record is written sends that
// push again after the restart, with the same notif_id and collapse id,
// so the phone replaces the first copy instead of showing two.
type Push struct {
	js       jetstream.JetStream
	st       PushStore
	presence Presence
	sender   push.Sender
	opts     PushOptions
}

// NewPush returns the push worker.
func NewPush(js jetstream.JetStream, st PushStore, presence Presence, sender push.Sender, opts PushOptions) *Push {
	return &Push{js: js, st: st, presence: presence, sender: sender, opts: opts.withDefaults()}
}

// Run consumes until ctx ends.
func (p *Push) Run(ctx context.Context) error {
	r, err := newRunnerOn(ctx, p.js, streams.StreamInbox, streams.ConsumerPush, p.opts.Options)
	if err != nil {
		return err
	}
	kv, err := p.js.KeyValue(ctx, streams.BucketPush)
	if err != nil {
		return fmt.Errorf("push: open bucket %s: %w", streams.BucketPush, err)
	}
	w := &pushWork{Push: p, r: r, kv: kv}
	return r.run(ctx, w.batch)
}

type pushWork struct {
	*Push
	r     *runner
	kv    jetstream.KeyValue
	skips []jetstream.PubAckFuture
}

// batch handles events in order; the first failure stops it and fails
// the batch, so that what follows is retried after it (the records make
// the retry skip what went out). The records of decisions not to push are
// written asynchronously and waited for before the batch is acknowledged.
func (w *pushWork) batch(ctx context.Context, msgs []jetstream.Msg) error {
	var failed error
	for _, m := range msgs {
		if err := w.event(ctx, m); err != nil {
			if errors.Is(err, errPoison) {
				w.r.deadLetter(ctx, m, err, 1)
				continue
			}
			failed = err
			break
		}
	}
	return errors.Join(failed, w.flushSkips(ctx))
}

// skip records that msg is not pushed to user, for a reason that may not
// hold when the event comes again (the user was online, or had muted the
// conversation): a redelivery, after a crash lost the consumer's acks,
// must decide the same.
func (w *pushWork) skip(user string, msg schema.Message) error {
	f, err := w.js.PublishAsync(pushKVSubject+"s."+hashKey(msg.MessageID, user), nil)
	if err != nil {
		return fmt.Errorf("push %s: record skip: %w: %w", msg.MessageID, errTransient, err)
	}
	w.skips = append(w.skips, f)
	return nil
}

func (w *pushWork) flushSkips(ctx context.Context) error {
	defer func() { w.skips = w.skips[:0] }()
	for _, f := range w.skips {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("push: record skip: %w: %w", errTransient, err)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// skipped reports whether an earlier delivery decided not to push msg to user.
func (w *pushWork) skipped(ctx context.Context, user string, msg schema.Message) (bool, error) {
	_, err := w.kv.Get(ctx, "s."+hashKey(msg.MessageID, user))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return false, nil
	}
	return false, fmt.Errorf("push %s: read skip record: %w", msg.MessageID, err)
}

// pushKVSubject is where JetStream keeps natter_push's keys: skip records
// are published there directly so that a batch's records go out at once.
const pushKVSubject = "$KV." + streams.BucketPush + "."

// recipient is one user's view of one message event.
type recipient struct {
	user   string
	cursor uint64
	msg    schema.Message
}

func (w *pushWork) event(ctx context.Context, m jetstream.Msg) error {
	md, err := m.Metadata()
	if err != nil {
		return fmt.Errorf("%w: no metadata: %v", errPoison, err)
	}
	user, kind, ok := streams.ParseInboxSubject(m.Subject())
	if !ok || kind != streams.InboxMessages {
		return nil // not a message event: nothing to push
	}
	var ev schema.MessageEvent
	if err := json.Unmarshal(m.Data(), &ev); err != nil {
		return fmt.Errorf("%w: event does not decode: %v", errPoison, err)
	}
	if ev.Type != schema.TypeMessage || ev.SenderID == user || ev.MessageID == "" {
		return nil // deletions, and the sender's own copy
	}
	return w.notify(ctx, recipient{user: user, cursor: md.Sequence.Stream, msg: ev.Message})
}

// notify pushes one message to one recipient, if the rules allow.
func (w *pushWork) notify(ctx context.Context, rc recipient) error {
	msg := rc.msg
	sent := time.UnixMilli(msg.ServerTS)
	if w.opts.Now().Sub(sent) > w.opts.MaxAge {
		return nil
	}
	online, err := w.presence.Online(ctx, rc.user)
	if err != nil {
		return fmt.Errorf("push %s to %s: presence: %w", msg.MessageID, rc.user, err)
	}
	if online {
		return w.skip(rc.user, msg)
	}
	if done, err := w.skipped(ctx, rc.user, msg); err != nil || done {
		return err
	}
	until, err := w.st.MutedUntil(ctx, rc.user, msg.ConversationID)
	if err != nil {
		return fmt.Errorf("push %s to %s: mute: %w", msg.MessageID, rc.user, err)
	}
	if until > msg.ServerTS {
		return w.skip(rc.user, msg)
	}
	q, err := w.st.QuietHours(ctx, rc.user)
	if err != nil {
		return fmt.Errorf("push %s to %s: quiet hours: %w", msg.MessageID, rc.user, err)
	}
	if push.InQuietHours(q, sent) {
		return w.skip(rc.user, msg)
	}
	collapseKey := "c." + hashKey(rc.user, msg.ConversationID)
	if collapsed, err := w.collapsed(ctx, collapseKey, msg); err != nil || collapsed {
		return err
	}
	tokens, err := w.st.PushTokens(ctx, rc.user)
	if err != nil {
		return fmt.Errorf("push %s to %s: tokens: %w", msg.MessageID, rc.user, err)
	}
	var ns []push.Notification
	var keys []string
	for _, t := range tokens {
		id := msg.MessageID + ":" + t.DeviceID
		key := "n." + hashKey(id)
		if _, err := w.kv.Get(ctx, key); err == nil {
			continue // sent before a crash or a failed batch
		} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
			return fmt.Errorf("push %s: read record: %w", id, err)
		}
		ns = append(ns, push.Notification{ID: id, DeviceID: t.DeviceID, Platform: t.Platform, Token: t.Token})
		keys = append(keys, key)
	}
	if len(ns) == 0 {
		return w.remember(ctx, collapseKey, msg)
	}
	title, body, badge, err := w.content(ctx, rc)
	if err != nil {
		return err
	}
	for i := range ns {
		ns[i].Title, ns[i].Body, ns[i].Badge = title, body, badge
		ns[i].ThreadID, ns[i].CollapseID, ns[i].Priority = msg.ConversationID, msg.ConversationID, push.PriorityHigh
		ns[i].Data = map[string]string{push.DataConversationID: msg.ConversationID, push.DataMessageID: msg.MessageID,
			push.DataCursor: w.opts.Cursor(rc.user, rc.cursor)}
	}
	results := w.sender.Send(ctx, ns)
	var failed error
	for i, res := range results {
		switch {
		case res.Dead:
			if err := w.st.DropPushToken(ctx, ns[i].DeviceID, ns[i].Token); err != nil {
				return fmt.Errorf("push %s: drop dead token: %w", ns[i].ID, err)
			}
			w.opts.Logger.Info("push token dead, removed", "device", ns[i].DeviceID, "platform", ns[i].Platform, "err", res.Err)
		case errors.Is(res.Err, push.ErrNoProvider):
			w.opts.Logger.Warn("push not sent", "device", ns[i].DeviceID, "err", res.Err)
		case res.Err != nil:
			failed = errors.Join(failed, res.Err)
			continue
		}
		if _, err := w.kv.Put(ctx, keys[i], []byte(strconv.FormatInt(w.opts.Now().UnixMilli(), 10))); err != nil {
			return fmt.Errorf("push %s: record: %w", ns[i].ID, err)
		}
	}
	if failed != nil {
		return fmt.Errorf("push %s to %s: %w", msg.MessageID, rc.user, failed)
	}
	return w.remember(ctx, collapseKey, msg)
}

// collapsed reports whether another message of the conversation was
// pushed to this user less than Collapse before msg (by server time, so a
// backlog pushed late collapses as the burst it was).
func (w *pushWork) collapsed(ctx context.Context, key string, msg schema.Message) (bool, error) {
	e, err := w.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("push %s: read collapse record: %w", msg.MessageID, err)
	}
	ts, id, _ := strings.Cut(string(e.Value()), " ")
	last, _ := strconv.ParseInt(ts, 10, 64)
	if id == msg.MessageID {
		return false, nil // this very message, redelivered: its records decide
	}
	// An older message than the one pushed last (a redelivery, or one
	// retried after a newer one went out) is never pushed after it.
	d := time.Duration(msg.ServerTS-last) * time.Millisecond
	return d < w.opts.Collapse, nil
}

func (w *pushWork) remember(ctx context.Context, key string, msg schema.Message) error {
	if _, err := w.kv.Put(ctx, key, []byte(strconv.FormatInt(msg.ServerTS, 10)+" "+msg.MessageID)); err != nil {
		return fmt.Errorf("push %s: write collapse record: %w", msg.MessageID, err)
	}
	return nil
}

// content is what the push says: the sender's name (the group's, with
// the sender before the text, for a group), the text or GenericBody, and
// the recipient's unread count.
func (w *pushWork) content(ctx context.Context, rc recipient) (title, body string, badge int, err error) {
	msg := rc.msg
	sender, err := w.st.UserByID(ctx, msg.SenderID)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return "", "", 0, fmt.Errorf("push %s: sender: %w", msg.MessageID, err)
	}
	title, body = sender.Username, preview(msg.Content)
	if w.opts.HideContent {
		body = GenericBody
	}
	badge, group, err := w.unread(ctx, rc)
	if err != nil {
		return "", "", 0, err
	}
	if msg.MessageType == store.ConversationGroup && group != "" {
		title = group
		if !w.opts.HideContent {
			body = sender.Username + ": " + body
		}
	}
	return title, body, badge, nil
}

// unread counts the recipient's unread messages (this one included even
// when the store has not caught up with it yet) and returns the
// conversation's title.
func (w *pushWork) unread(ctx context.Context, rc recipient) (int, string, error) {
	var total int64
	var title string
	counted := false
	page := store.ConversationPage{}
	for range maxBadgePages {
		cs, err := w.st.Conversations(ctx, rc.user, page, 100)
		if err != nil {
			return 0, "", fmt.Errorf("push %s: unread count: %w", rc.msg.MessageID, err)
		}
		for _, c := range cs {
			total += c.UnreadCount
			if c.ID == rc.msg.ConversationID {
				title, counted = c.Title, c.LastSeq >= rc.msg.Seq
			}
		}
		if len(cs) < 100 {
			break
		}
		last := cs[len(cs)-1]
		page = store.ConversationPage{ActivityAt: last.ActivityAt(), ID: last.ID}
	}
	if !counted {
		total++
	}
	return int(total), title, nil
}

func preview(s string) string {
	if len(s) <= maxPreview {
		return s
	}
	cut := maxPreview
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// hashKey is a KV key for ids of any alphabet.
func hashKey(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}
