package chat

import (
	"context"

	"github.com/natter-chat/natter/schema"
	"github.com/natter-chat/natter/streams"
)

// Relations holds what users decided about each other: blocks and
// privacy. The send path reads "exists" and "blocked" on every message,
// so both are cached; a block change is announced to every node, which
// drops the pair from its cache before the change is answered.
type Relations struct {
	st      Store
	notices *streams.BlockNotices
	users   *cache[struct{}]
	blocks  *cache[bool]
}

func newRelations(st Store, notices *streams.BlockNotices) *Relations {
	return &Relations{st: st, notices: notices, users: newCache[struct{}](1 << 20), blocks: newCache[bool](1 << 20)}
}

// forget drops a pair (streams.PairKey) from the cache.
func (r *Relations) forget(pair string) { r.blocks.forget(pair) }

// UserExists answers from the cache (users are never deleted), or the
// store: not_found for an unknown user.
func (r *Relations) UserExists(ctx context.Context, id string) error {
	if !schema.ValidUserID(id) {
		return notFound("user %q not found", id)
	}
	_, ok, gen := r.users.get(id)
	if ok {
		return nil
	}
	if _, err := r.st.UserByID(ctx, id); err != nil {
		return Translate(err, "user", RetryRequest)
	}
	r.users.put(id, struct{}{}, gen)
	return nil
}

// Blocked reports whether either of a and b blocked the other.
func (r *Relations) Blocked(ctx context.Context, a, b string) (bool, error) {
	if a == b {
		return false, nil
	}
	k := streams.PairKey(a, b)
	v, ok, gen := r.blocks.get(k)
	if ok {
		return v, nil
	}
	v, err := r.st.Blocked(ctx, a, b)
	if err != nil {
		return false, Translate(err, "block state", RetryRequest)
	}
	r.blocks.put(k, v, gen)
	return v, nil
}

// SetBlock blocks (or unblocks) other for me.
func (r *Relations) SetBlock(ctx context.Context, me, other string, block bool) error {
	if _, err := r.st.UserByID(ctx, other); err != nil {
		return Translate(err, "user", RetryRequest)
	}
	var err error
	if block {
		err = r.st.Block(ctx, me, other)
	} else {
		err = r.st.Unblock(ctx, me, other)
	}
	if err != nil {
		return Translate(err, "block", RetryRequest)
	}
	r.blocks.forget(streams.PairKey(me, other))
	return Translate(r.notices.Announce(me, other), "block change", RetryRequest)
}

// BlockedUsers lists the users me has blocked.
func (r *Relations) BlockedUsers(ctx context.Context, me string) ([]string, error) {
	ids, err := r.st.BlockedUsers(ctx, me)
	return ids, Translate(err, "blocks", RetryRequest)
}

// Contacts reports whether a and b have exchanged a message (either
// way): their direct conversation has one. Only that counts: opening a
// conversation (POST /v1/conversations) makes no contact, or a stranger
// could see anyone's "contacts" last seen; sharing a group does not
// either. The test is the store's last seq of the pair's conversation,
// one key read. A message counts once persisted (milliseconds after its
// ack).
func (r *Relations) Contacts(ctx context.Context, a, b string) (bool, error) {
	if a == b {
		return true, nil
	}
	n, err := r.st.LastSeq(ctx, schema.DirectConversationID(a, b))
	if err != nil {
		return false, Translate(err, "contacts", RetryRequest)
	}
	return n > 0, nil
}

// Privacy settings of the contract.
const (
	PrivacyEveryone       = "everyone"
	PrivacyContacts       = "contacts"
	PrivacyNobody         = "nobody"
	PrivacySameAsLastSeen = "same_as_last_seen"
)

// Privacy is who may see a user's last seen and online status.
type Privacy struct {
	LastSeen string `json:"last_seen"`
	Online   string `json:"online"`
}

// Privacy returns me's settings, with the defaults filled in.
func (r *Relations) Privacy(ctx context.Context, me string) (Privacy, error) {
	u, err := r.st.UserByID(ctx, me)
	if err != nil {
		return Privacy{}, Translate(err, "user", RetryRequest)
	}
	return privacyOf(u.LastSeenPrivacy, u.OnlinePrivacy), nil
}

func privacyOf(lastSeen, online string) Privacy {
	p := Privacy{LastSeen: lastSeen, Online: online}
	if p.LastSeen == "" {
		p.LastSeen = PrivacyEveryone
	}
	if p.Online == "" {
		p.Online = PrivacyEveryone
	}
	return p
}

// SetPrivacy changes me's settings; an empty field is left as it is.
func (r *Relations) SetPrivacy(ctx context.Context, me string, p Privacy) (Privacy, error) {
	switch p.LastSeen {
	case "", PrivacyEveryone, PrivacyContacts, PrivacyNobody:
	default:
		return Privacy{}, badRequest(`last_seen must be "everyone", "contacts" or "nobody"`)
	}
	switch p.Online {
	case "", PrivacyEveryone, PrivacySameAsLastSeen:
	default:
		return Privacy{}, badRequest(`online must be "everyone" or "same_as_last_seen"`)
	}
	if p.LastSeen == "" && p.Online == "" {
		return Privacy{}, badRequest(`give last_seen ("everyone", "contacts" or "nobody") or online ("everyone" or "same_as_last_seen")`)
	}
	if p.LastSeen != "" {
		if err := r.st.SetLastSeenPrivacy(ctx, me, p.LastSeen); err != nil {
			return Privacy{}, Translate(err, "user", RetryRequest)
		}
	}
	if p.Online != "" {
		if err := r.st.SetOnlinePrivacy(ctx, me, p.Online); err != nil {
			return Privacy{}, Translate(err, "user", RetryRequest)
		}
	}
	return r.Privacy(ctx, me)
}
