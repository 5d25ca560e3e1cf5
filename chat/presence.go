package chat

import (
	"context"
	"encoding/json"
	"slices"
	"time"

	"github.com/natter-chat/natter/schema"
	"github.com/natter-chat/natter/streams"
)

// Presence answers who is online, keeps presence subscriptions and
// carries typing indicators. Who is online comes from the cluster-wide
// registry in NATS KV (presence_registry.go). Blocks hide both
// directions; privacy hides per the user's settings.
type Presence struct {
	st      Store
	reg     *registry
	rel     *Relations
	live    *streams.Ephemeral
	typing  *typingExpiry
	maxSubs int
	// limits (nil: none) and coalesce: see limits.go and typing_coalesce.go.
	limits   *Limits
	coalesce typingGate
}

func newPresence(st Store, reg *registry, rel *Relations, live *streams.Ephemeral, maxSubs int, typingTTL time.Duration) *Presence {
	p := &Presence{st: st, reg: reg, rel: rel, live: live, maxSubs: maxSubs}
	p.typing = newTypingExpiry(typingTTL, p.expireTyping)
	return p
}

// Of is userID's presence as viewer may see it. It does not check that
// userID exists (callers that must answer 404 check first).
func (p *Presence) Of(ctx context.Context, viewer, userID string) schema.Presence {
	online, seen := p.reg.status(ctx, userID)
	return p.render(ctx, viewer, userID, online, seen)
}

// render applies blocks and privacy to a user's state as viewer sees it.
func (p *Presence) render(ctx context.Context, viewer, userID string, online bool, seen int64) schema.Presence {
	out := schema.Presence{Type: schema.TypePresence, UserID: userID, Status: "offline"}
	if viewer == userID {
		if online {
			out.Status = "online"
		} else if seen > 0 {
			out.LastSeen = seen
		}
		return out
	}
	if blocked, err := p.rel.Blocked(ctx, viewer, userID); err != nil || blocked {
		return out // a block hides presence and last seen both ways
	}
	u, err := p.st.UserByID(ctx, userID)
	if err != nil {
		return out
	}
	priv := privacyOf(u.LastSeenPrivacy, u.OnlinePrivacy)
	lastSeenVisible := p.lastSeenVisible(ctx, viewer, userID, priv.LastSeen)
	if online {
		if priv.Online == PrivacySameAsLastSeen && !lastSeenVisible {
			return out // hidden online status reads offline, without last_seen
		}
		out.Status = "online"
		return out
	}
	if seen > 0 && lastSeenVisible {
		out.LastSeen = seen
	}
	return out
}

func (p *Presence) lastSeenVisible(ctx context.Context, viewer, userID, setting string) bool {
	switch setting {
	case PrivacyNobody:
		return false
	case PrivacyContacts:
		ok, err := p.rel.Contacts(ctx, viewer, userID)
		return err == nil && ok
	}
	return true
}

// Typing tells the other participants of conv that userID is composing
// or paused. Nothing is stored; a participant blocked by userID, or who
// blocked them, is not told.
func (p *Presence) Typing(ctx context.Context, userID, conv, state string) error {
	if state != "composing" && state != "paused" {
		return badRequest(`state must be "composing" or "paused"`)
	}
	if err := p.limits.Allow(LimitTyping, userID); err != nil {
		return err
	}
	if !schema.ValidConversationID(conv) {
		return notFound("conversation not found")
	}
	users, err := p.st.Participants(ctx, conv)
	if err != nil || !slices.Contains(users, userID) {
		return notFound("conversation not found")
	}
	p.typing.note(userID, conv, state) // composing expires by itself (typing.go)
	if !p.coalesce.forward(userID, conv, state, time.Now()) {
		return nil // coalesced: a composing was passed on moments ago
	}
	ev, _ := json.Marshal(schema.Typing{Type: schema.TypeTyping, ConversationID: conv, UserID: userID, State: state})
	for _, u := range users {
		if u == userID {
			continue
		}
		if blocked, err := p.rel.Blocked(ctx, userID, u); err != nil || blocked {
			continue
		}
		_ = p.live.Publish(u, ev)
	}
	return nil
}
