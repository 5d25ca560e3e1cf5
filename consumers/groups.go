package consumers

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/natter-chat/natter/schema"
	"github.com/natter-chat/natter/streams"
)

// GroupMembers is what the consumers need of a store with groups: who was
// a member as of a seq. The store records every membership change as of
// the seq it was sequenced at (before the change's record and before any
// later message reach CONV), so the answer for a message's seq is final
// when the message is fanned out, whatever changed since.
type GroupMembers interface {
	MembersAt(ctx context.Context, groupID string, seq int64) ([]string, error)
}

// groupMessageUsers are the inboxes of a group message: the members as of
// its seq. A removed member gets nothing sequenced after the removal, an
// added one everything from their joining on.
func groupMessageUsers(ctx context.Context, st any, msg streams.MessageRecord) ([]string, error) {
	gm, ok := st.(GroupMembers)
	if !ok {
		return nil, fmt.Errorf("%w: group message %s but the store has no groups", errPoison, msg.MessageID)
	}
	users, err := gm.MembersAt(ctx, msg.RecipientID, msg.Seq)
	if err != nil {
		return nil, fmt.Errorf("fanout %s: members: %w", msg.MessageID, err)
	}
	return users, nil
}

// membershipEvent renders a membership record as the `group` event, for
// every member right after the change (the record lists them) and the
// user it concerns (a removed member learns of their removal).
func membershipEvent(ctx context.Context, st any, data []byte) (users []string, event []byte, err error) {
	rec, err := streams.DecodeMembership(data)
	if err != nil || rec.GroupID == "" || rec.Change == "" {
		return nil, nil, fmt.Errorf("%w: membership record does not decode: %v", errPoison, err)
	}
	users = slices.Clone(rec.Members)
	if rec.Members == nil {
		// A record without its recipients: the members as of the next seq.
		gm, ok := st.(GroupMembers)
		if !ok {
			return nil, nil, fmt.Errorf("%w: membership record of %s but the store has no groups", errPoison, rec.GroupID)
		}
		if users, err = gm.MembersAt(ctx, rec.GroupID, rec.AsOfSeq+1); err != nil {
			return nil, nil, fmt.Errorf("fanout %s of %s: members: %w", rec.Change, rec.GroupID, err)
		}
	}
	if rec.UserID != "" && !slices.Contains(users, rec.UserID) {
		users = append(users, rec.UserID)
	}
	ev := schema.GroupEvent{Type: schema.TypeGroup, GroupID: rec.GroupID, Change: rec.Change, UserID: rec.UserID,
		By: rec.By, TS: rec.TS}
	if rec.Change == schema.GroupRoleChanged {
		ev.Role = rec.Role
	}
	event, _ = json.Marshal(ev)
	return users, event, nil
}
