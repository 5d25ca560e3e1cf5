package chat

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/natter-chat/natter/schema"
	"github.com/natter-chat/natter/store"
	"github.com/natter-chat/natter/streams"
)

// GroupStore is what Groups needs from the store: the group tables, and
// the receipt log for message info when the store keeps one.
type GroupStore interface {
	store.Groups
}

// Groups is group chat: creating groups, their membership and roles, the
// group branch of the send path and message info. Its rules:
//   - a non-member reading a group gets not_found (existence does not
//     leak); a non-member changing or sending to one gets not_member;
//   - adding, removing others, renaming and changing roles are for
//     admins (not_admin); anyone may leave;
//   - when the last admin leaves, the longest-standing member becomes
//     admin (the store does it in the same transaction);
//   - at most store.MaxGroupMembers members (group_full, checked inside
//     the store's transaction).
//
// Every change runs through Sequencer.Membership, so it takes its place
// in the group conversation's order: the store records it as of the
// conversation's last seq, and a Membership record on CONV carries it to
// the fanout consumer, which turns it into `group` events. A per-group
// mutex makes "is the sender a member" and the message's seq one step, so
// a message sequenced after a removal never comes from the removed.
type Groups struct {
	st    GroupStore // nil when the store has no groups
	conv  Store
	seq   *streams.Sequencer
	rel   *Relations
	log   store.ReceiptLog // nil when the store keeps none
	locks sync.Map         // group id -> *sync.Mutex
}

func newGroups(st Store, seq *streams.Sequencer, rel *Relations) *Groups {
	g := &Groups{conv: st, seq: seq, rel: rel}
	g.st, _ = st.(GroupStore)
	g.log, _ = st.(store.ReceiptLog)
	return g
}

// lock serializes the changes of one group and its sends' membership
// checks. The mutexes are kept for the life of the process: one per group
// that was used, a few dozen bytes each.
func (g *Groups) lock(groupID string) func() {
	v, _ := g.locks.LoadOrStore(groupID, &sync.Mutex{})
	mu := v.(*sync.Mutex)
	mu.Lock()
	return mu.Unlock
}

// GroupMember is one member in a group answer.
type GroupMember struct {
	UserID string `json:"user_id"`
	Role   string `json:"role"`
}

// GroupInfo answers every group request.
type GroupInfo struct {
	GroupID        string        `json:"group_id"`
	ConversationID string        `json:"conversation_id"`
	Name           string        `json:"name"`
	MemberCount    int           `json:"member_count"`
	Members        []GroupMember `json:"members"`
}

func (g *Groups) enabled() error {
	if g.st == nil {
		return Errorf(schema.CodeUnavailable, "this server's store has no groups (use --store sqlite or postgres)")
	}
	return nil
}

// translateGroup is Translate plus the group codes of the store.
func translateGroup(err error, what string) error {
	if errors.Is(err, store.ErrGroupFull) {
		return Errorf(schema.CodeGroupFull, "a group has at most %d members", store.MaxGroupMembers)
	}
	return Translate(err, what, RetryRequest)
}

// Create makes a group of the caller (its admin) and memberIDs.
func (g *Groups) Create(ctx context.Context, c Claims, name string, memberIDs []string) (GroupInfo, error) {
	if err := g.enabled(); err != nil {
		return GroupInfo{}, err
	}
	if err := schema.ValidateGroupName(name); err != nil {
		return GroupInfo{}, err
	}
	ids, err := g.users(ctx, memberIDs, c.UserID, true)
	if err != nil {
		return GroupInfo{}, err
	}
	if len(ids)+1 > store.MaxGroupMembers {
		return GroupInfo{}, translateGroup(store.ErrGroupFull, "group")
	}
	now := time.Now().UnixMilli()
	id := schema.NewID()
	grp := store.Group{ID: id, ConversationID: schema.GroupConversationID(id), Name: name, CreatedBy: c.UserID, CreatedAt: now}
	defer g.lock(id)()
	err = g.seq.Membership(ctx, grp.ConversationID, func(ctx context.Context, last int64) ([]streams.Membership, error) {
		ms := []store.Member{{UserID: c.UserID, Role: store.RoleAdmin, JoinedSeq: last + 1, JoinedAt: now}}
		for _, u := range ids {
			ms = append(ms, store.Member{UserID: u, Role: store.RoleMember, JoinedSeq: last + 1, JoinedAt: now})
		}
		if err := g.st.CreateGroup(ctx, grp, ms); err != nil {
			return nil, err
		}
		members := make([]string, 0, len(ms))
		for _, m := range ms {
			members = append(members, m.UserID)
		}
		return []streams.Membership{{GroupID: id, Change: schema.GroupCreated, By: c.UserID, TS: now, Members: members}}, nil
	})
	if err != nil {
		return GroupInfo{}, translateGroup(err, "group")
	}
	return g.info(ctx, id)
}

// users checks a list of user ids: each known, given once, the caller
// left out (a creator is a member anyway).
func (g *Groups) users(ctx context.Context, ids []string, caller string, allowEmpty bool) ([]string, error) {
	if len(ids) == 0 && !allowEmpty {
		return nil, badRequest("user_ids must name at least one user")
	}
	if len(ids) > store.MaxGroupMembers {
		return nil, translateGroup(store.ErrGroupFull, "group")
	}
	out := make([]string, 0, len(ids))
	for _, u := range ids {
		if u == caller || slices.Contains(out, u) {
			continue
		}
		if err := g.rel.UserExists(ctx, u); err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, nil
}

// info is a group as its members see it.
func (g *Groups) info(ctx context.Context, groupID string) (GroupInfo, error) {
	grp, err := g.st.Group(ctx, groupID)
	if err != nil {
		return GroupInfo{}, translateGroup(err, "group")
	}
	ms, err := g.st.Members(ctx, groupID)
	if err != nil {
		return GroupInfo{}, translateGroup(err, "group")
	}
	out := GroupInfo{GroupID: grp.ID, ConversationID: grp.ConversationID, Name: grp.Name, MemberCount: grp.MemberCount,
		Members: make([]GroupMember, 0, len(ms))}
	for _, m := range ms {
		out.Members = append(out.Members, GroupMember{m.UserID, m.Role})
	}
	return out, nil
}

// Get returns a group to one of its members; not_found for anyone else.
func (g *Groups) Get(ctx context.Context, c Claims, groupID string) (GroupInfo, error) {
	if err := g.enabled(); err != nil {
		return GroupInfo{}, err
	}
	if _, err := g.member(ctx, groupID, c.UserID, false); err != nil {
		return GroupInfo{}, err
	}
	return g.info(ctx, groupID)
}

// member returns userID's membership. A non-member gets not_found when
// reading (write false) and not_member when changing or sending, once
// the group is known to exist.
func (g *Groups) member(ctx context.Context, groupID, userID string, write bool) (store.Member, error) {
	nf := notFound("group %q not found", groupID)
	if !schema.ValidUserID(groupID) { // group ids are subject-safe like user ids
		return store.Member{}, nf
	}
	m, err := g.st.Member(ctx, groupID, userID)
	if err == nil {
		return m, nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return store.Member{}, translateGroup(err, "group")
	}
	if !write {
		return store.Member{}, nf
	}
	if _, err := g.st.Group(ctx, groupID); err != nil {
		return store.Member{}, translateGroup(err, "group")
	}
	return store.Member{}, Errorf(schema.CodeNotMember, "you are not a member of group %q", groupID)
}

// admin checks that userID is an admin of the group.
func (g *Groups) admin(ctx context.Context, groupID, userID string) error {
	m, err := g.member(ctx, groupID, userID, true)
	if err != nil {
		return err
	}
	if m.Role != store.RoleAdmin {
		return Errorf(schema.CodeNotAdmin, "only an admin of the group may do this")
	}
	return nil
}

// change runs one change of a group under its lock and in its order, and
// answers with the group.
func (g *Groups) change(ctx context.Context, groupID string, authorize func(ctx context.Context) error,
	apply func(ctx context.Context, last int64, now int64) ([]streams.Membership, error)) (GroupInfo, error) {
	if err := g.enabled(); err != nil {
		return GroupInfo{}, err
	}
	defer g.lock(groupID)()
	if err := authorize(ctx); err != nil {
		return GroupInfo{}, err
	}
	now := time.Now().UnixMilli()
	err := g.seq.Membership(ctx, schema.GroupConversationID(groupID), func(ctx context.Context, last int64) ([]streams.Membership, error) {
		recs, err := apply(ctx, last, now)
		if err != nil {
			return nil, err
		}
		members, err := g.memberIDs(ctx, groupID)
		if err != nil {
			return nil, err
		}
		for i := range recs {
			recs[i].GroupID, recs[i].TS, recs[i].Members = groupID, now, members
		}
		return recs, nil
	})
	if err != nil {
		return GroupInfo{}, translateGroup(err, "group")
	}
	return g.info(ctx, groupID)
}

// memberIDs lists the current members, for a change's group event: read
// in the change's own step, so each event goes to the members right after
// its change, even when another change follows before any message.
func (g *Groups) memberIDs(ctx context.Context, groupID string) ([]string, error) {
	ms, err := g.st.Members(ctx, groupID)
	if err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(ms))
	for _, m := range ms {
		ids = append(ids, m.UserID)
	}
	return ids, nil
}

// Rename renames a group (admins only).
func (g *Groups) Rename(ctx context.Context, c Claims, groupID, name string) (GroupInfo, error) {
	if err := schema.ValidateGroupName(name); err != nil {
		return GroupInfo{}, err
	}
	return g.change(ctx, groupID, func(ctx context.Context) error { return g.admin(ctx, groupID, c.UserID) },
		func(ctx context.Context, _, _ int64) ([]streams.Membership, error) {
			if err := g.st.RenameGroup(ctx, groupID, name); err != nil {
				return nil, err
			}
			return []streams.Membership{{Change: schema.GroupRenamed, By: c.UserID}}, nil
		})
}

// Add adds users to a group (admins only); members already in it are
// left as they are. They see the group's messages from their joining on.
func (g *Groups) Add(ctx context.Context, c Claims, groupID string, userIDs []string) (GroupInfo, error) {
	var ids []string
	return g.change(ctx, groupID, func(ctx context.Context) error {
		if err := g.admin(ctx, groupID, c.UserID); err != nil {
			return err
		}
		var err error
		ids, err = g.users(ctx, userIDs, c.UserID, false)
		return err
	}, func(ctx context.Context, last, now int64) ([]streams.Membership, error) {
		added, err := g.st.AddMembers(ctx, groupID, ids, last+1, now)
		if err != nil {
			return nil, err
		}
		var recs []streams.Membership
		for _, u := range added {
			recs = append(recs, streams.Membership{Change: schema.GroupMemberAdded, UserID: u, Role: store.RoleMember, By: c.UserID})
		}
		return recs, nil
	})
}

// Remove removes userID from a group: an admin removing a member, or a
// member leaving (userID is the caller). When the last admin goes, the
// longest-standing member becomes admin.
func (g *Groups) Remove(ctx context.Context, c Claims, groupID, userID string) (GroupInfo, error) {
	change := schema.GroupMemberRemoved
	if userID == c.UserID {
		change = schema.GroupMemberLeft
	}
	return g.change(ctx, groupID, func(ctx context.Context) error {
		if change == schema.GroupMemberLeft {
			_, err := g.member(ctx, groupID, c.UserID, true)
			return err
		}
		if err := g.admin(ctx, groupID, c.UserID); err != nil {
			return err
		}
		if _, err := g.st.Member(ctx, groupID, userID); err != nil {
			return Translate(err, "member", RetryRequest)
		}
		return nil
	}, func(ctx context.Context, last, _ int64) ([]streams.Membership, error) {
		promoted, err := g.st.RemoveMember(ctx, groupID, userID, last+1)
		if err != nil {
			return nil, err
		}
		recs := []streams.Membership{{Change: change, UserID: userID, By: c.UserID}}
		if promoted != "" {
			recs = append(recs, streams.Membership{Change: schema.GroupRoleChanged, UserID: promoted, Role: store.RoleAdmin, By: c.UserID})
		}
		return recs, nil
	})
}

// SetRole makes a member an admin or a member (admins only). A group
// keeps at least one admin: demoting the last one is refused.
func (g *Groups) SetRole(ctx context.Context, c Claims, groupID, userID, role string) (GroupInfo, error) {
	if role != store.RoleAdmin && role != store.RoleMember {
		return GroupInfo{}, badRequest(`role must be "admin" or "member"`)
	}
	return g.change(ctx, groupID, func(ctx context.Context) error {
		if err := g.admin(ctx, groupID, c.UserID); err != nil {
			return err
		}
		target, err := g.st.Member(ctx, groupID, userID)
		if err != nil {
			return Translate(err, "member", RetryRequest)
		}
		if role == store.RoleMember && target.Role == store.RoleAdmin {
			ms, err := g.st.Members(ctx, groupID)
			if err != nil {
				return Translate(err, "group", RetryRequest)
			}
			admins := 0
			for _, m := range ms {
				if m.Role == store.RoleAdmin {
					admins++
				}
			}
			if admins == 1 {
				return badRequest("a group needs an admin: make another member admin first")
			}
		}
		return nil
	}, func(ctx context.Context, _, _ int64) ([]streams.Membership, error) {
		if err := g.st.SetRole(ctx, groupID, userID, role); err != nil {
			return nil, err
		}
		return []streams.Membership{{Change: schema.GroupRoleChanged, UserID: userID, Role: role, By: c.UserID}}, nil
	})
}

// send sequences a message to a group the sender is a member of, under
// the group's lock so that no membership change falls between the check
// and the seq.
func (g *Groups) send(ctx context.Context, rec streams.MessageRecord) (streams.MessageRecord, bool, error) {
	if err := g.enabled(); err != nil {
		return rec, false, err
	}
	defer g.lock(rec.RecipientID)()
	if _, err := g.member(ctx, rec.RecipientID, rec.SenderID, true); err != nil {
		return rec, false, err // not_member is the contract's 403 for a non-member sending
	}
	rec.ConversationID = schema.GroupConversationID(rec.RecipientID)
	rec.MessageType = schema.MessageTypeGroup
	out, dup, err := g.seq.Publish(ctx, rec)
	if err != nil {
		return out, dup, Translate(err, "send", RetrySend)
	}
	return out, dup, nil
}

// sendGroup is Send's group branch, after validation, rate limit and
// dedupe.
func (m *Messages) sendGroup(ctx context.Context, c Claims, req *schema.SendRequest) (schema.Ack, error) {
	// Before publishing: a publish that fails for us may still be stored.
	m.seen.add(c.UserID, req.ClientMessageID)
	rec, dup, err := m.groups.send(ctx, streams.MessageRecord{SenderID: c.UserID, RecipientID: req.RecipientID,
		Content: req.Content, ClientMessageID: req.ClientMessageID, ServerTS: time.Now().UnixMilli()})
	if err != nil {
		return schema.Ack{}, err
	}
	return schema.Ack{ClientMessageID: rec.ClientMessageID, MessageID: rec.MessageID, ConversationID: rec.ConversationID,
		Seq: rec.Seq, ServerTS: rec.ServerTS, Status: schema.StatusSent, Duplicate: dup}, nil
}

// historyFloor is the lowest seq userID may read in conv: where their
// current membership began for a group, 1 otherwise. A member added later
// cannot page back to before they joined.
func (g *Groups) historyFloor(ctx context.Context, conv, userID string) (int64, error) {
	groupID, ok := schema.GroupOfConversation(conv)
	if !ok || g.st == nil {
		return 1, nil
	}
	m, err := g.st.Member(ctx, groupID, userID)
	if err != nil {
		return 0, Translate(err, "conversation", RetryRequest)
	}
	return m.JoinedSeq, nil
}

// MessageReceipt is one reader in message info.
type MessageReceipt struct {
	UserID      string `json:"user_id"`
	DeliveredAt int64  `json:"delivered_at,omitempty"`
	ReadAt      int64  `json:"read_at,omitempty"`
}

// MessageReceipts is the answer of message info.
type MessageReceipts struct {
	Receipts []MessageReceipt `json:"receipts"`
}

// Receipts is "message info": when each other member (the peer, for a
// direct message) had the message delivered and read. Its sender's alone:
// anyone else gets not_found.
func (g *Groups) Receipts(ctx context.Context, m *Messages, c Claims, messageID string) (MessageReceipts, error) {
	msg, err := m.visible(ctx, c.UserID, messageID)
	if err != nil {
		return MessageReceipts{}, err
	}
	if msg.SenderID != c.UserID {
		return MessageReceipts{}, notFound("message %q not found", messageID)
	}
	var readers []string
	if groupID, ok := schema.GroupOfConversation(msg.ConversationID); ok && g.st != nil {
		if readers, err = g.st.MembersAt(ctx, groupID, msg.Seq); err != nil {
			return MessageReceipts{}, Translate(err, "receipts", RetryRequest)
		}
	} else if readers, err = g.conv.Participants(ctx, msg.ConversationID); err != nil {
		return MessageReceipts{}, Translate(err, "receipts", RetryRequest)
	}
	times := map[string]store.ReceiptTime{}
	if g.log != nil {
		ts, err := g.log.ReceiptTimes(ctx, msg.ConversationID, msg.Seq)
		if err != nil {
			return MessageReceipts{}, Translate(err, "receipts", RetryRequest)
		}
		for _, t := range ts {
			times[t.UserID] = t
		}
	}
	out := MessageReceipts{Receipts: []MessageReceipt{}}
	for _, u := range readers {
		if u == c.UserID {
			continue
		}
		t := times[u]
		out.Receipts = append(out.Receipts, MessageReceipt{UserID: u, DeliveredAt: t.DeliveredAt, ReadAt: t.ReadAt})
	}
	return out, nil
}
