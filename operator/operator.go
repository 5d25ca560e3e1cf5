// Package operator is natter's operator API: requests over NATS that list
// and inspect accounts and groups and revoke a device, for `natter users`
// and `natter groups`. Operators are not users, so none of this is on
// the REST or WebSocket API; it is served on natter's own NATS
// connection on the subjects below, which only natter itself and the
// operator credentials may publish to: a NATS-native user may publish
// only natter.api.<user>.<device>.> (gateway/nats.go), and nats-server
// refuses anything else before natter sees it. (A node started with
// --nats-insecure has no such guard: anyone who reaches its NATS port is
// an operator there.)
//
//	natter.operator.users.list          ListUsersRequest    -> ListUsersReply
//	natter.operator.users.show          UserRequest         -> UserReply
//	natter.operator.users.revoke-device RevokeDeviceRequest -> RevokeDeviceReply
//	natter.operator.groups.list         ListGroupsRequest   -> ListGroupsReply
//	natter.operator.groups.show         GroupRequest        -> GroupReply
package operator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natter-chat/natter/chat"
	"github.com/natter-chat/natter/schema"
	"github.com/natter-chat/natter/store"
)

// Subjects of the operator API.
const (
	SubjectPrefix       = "natter.operator."
	SubjectUsers        = SubjectPrefix + "users.list"
	SubjectUser         = SubjectPrefix + "users.show"
	SubjectRevokeDevice = SubjectPrefix + "users.revoke-device"
	SubjectGroups       = SubjectPrefix + "groups.list"
	SubjectGroup        = SubjectPrefix + "groups.show"
)

// Paging: a page is DefaultLimit rows unless asked, at most MaxLimit.
const (
	DefaultLimit = 50
	MaxLimit     = 1000
)

// queue shares the requests among a cluster's nodes: any one answers.
const queue = "natter-operator"

// Store is what the operator API reads: accounts, their devices and
// blocks, and for the group pages the group tables (optional: a store
// without them answers the group requests with unavailable).
type Store interface {
	store.UserDirectory
	UserByID(ctx context.Context, id string) (store.User, error)
	UserByUsername(ctx context.Context, username string) (store.User, error)
	BlockedUsers(ctx context.Context, blocker string) ([]string, error)
	LastSeq(ctx context.Context, conversationID string) (int64, error)
	Message(ctx context.Context, conversationID string, seq int64) (store.Message, error)
}

// GroupStore is the group side, found on the store by type assertion.
type GroupStore interface {
	store.GroupDirectory
	Group(ctx context.Context, groupID string) (store.Group, error)
	Members(ctx context.Context, groupID string) ([]store.Member, error)
}

// Config wires the operator API to a node.
type Config struct {
	Store Store
	// Presence is a user's state across the cluster, unfiltered.
	Presence func(ctx context.Context, userID string) (online bool, lastSeen int64)
	// Revoke revokes a device of a user at once, on every node
	// (chat.Accounts.RevokeDevice).
	Revoke func(ctx context.Context, userID, deviceID string) error
	Logger *slog.Logger
}

// Service answers the operator API.
type Service struct {
	cfg    Config
	groups GroupStore // nil without groups
}

// New returns the service; Serve runs it.
func New(cfg Config) *Service {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Service{cfg: cfg}
	s.groups, _ = cfg.Store.(GroupStore)
	return s
}

// Serve answers requests on nc (natter's own connection) until ctx ends,
// then unsubscribes. Requests are handled one at a time per subject:
// operators make few of them.
func (s *Service) Serve(ctx context.Context, nc *nats.Conn) error {
	handlers := map[string]func(context.Context, []byte) (any, error){
		SubjectUsers:        s.listUsers,
		SubjectUser:         s.showUser,
		SubjectRevokeDevice: s.revokeDevice,
		SubjectGroups:       s.listGroups,
		SubjectGroup:        s.showGroup,
	}
	var subs []*nats.Subscription
	defer func() {
		for _, sub := range subs {
			_ = sub.Unsubscribe()
		}
	}()
	for subject, h := range handlers {
		sub, err := nc.QueueSubscribe(subject, queue, func(m *nats.Msg) { s.answer(ctx, m, h) })
		if err != nil {
			return fmt.Errorf("operator api: subscribe %s: %w", subject, err)
		}
		subs = append(subs, sub)
	}
	if err := nc.Flush(); err != nil {
		return fmt.Errorf("operator api: %w", err)
	}
	<-ctx.Done()
	return nil
}

func (s *Service) answer(ctx context.Context, m *nats.Msg, h func(context.Context, []byte) (any, error)) {
	if m.Reply == "" {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	v, err := h(ctx, m.Data)
	if err != nil {
		v = s.errorReply(m.Subject, err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		b, _ = json.Marshal(s.errorReply(m.Subject, err))
	}
	_ = m.Respond(b)
}

// errorReply renders a contract error; anything else is logged and
// answered as internal.
func (s *Service) errorReply(subject string, err error) ErrorReply {
	var e *schema.Error
	if errors.As(err, &e) {
		if e.Code == schema.CodeUnavailable {
			s.cfg.Logger.Warn("operator api", "subject", subject, "err", err)
		}
		return ErrorReply{Error: &ErrorBody{Code: e.Code, Message: e.Message}}
	}
	s.cfg.Logger.Error("operator api", "subject", subject, "err", err)
	return ErrorReply{Error: &ErrorBody{Code: schema.CodeInternal, Message: "internal error (see the server log)"}}
}

func decode(data []byte, v any) error {
	if len(data) == 0 {
		return nil
	}
	if err := json.Unmarshal(data, v); err != nil {
		return chat.Errorf(schema.CodeBadRequest, "request body: %v", err)
	}
	return nil
}

func limitOf(n int) (int, error) {
	switch {
	case n == 0:
		return DefaultLimit, nil
	case n < 0 || n > MaxLimit:
		return 0, chat.Errorf(schema.CodeBadRequest, "limit must be 1 to %d", MaxLimit)
	}
	return n, nil
}

func (s *Service) listUsers(ctx context.Context, data []byte) (any, error) {
	var req ListUsersRequest
	if err := decode(data, &req); err != nil {
		return nil, err
	}
	limit, err := limitOf(req.Limit)
	if err != nil {
		return nil, err
	}
	// One more than asked tells whether another page follows.
	us, err := s.cfg.Store.ListUsers(ctx, req.Match, req.After, limit+1)
	if err != nil {
		return nil, chat.Translate(err, "users", chat.RetryRequest)
	}
	out := ListUsersReply{Users: []UserRow{}}
	for i, u := range us {
		if i == limit {
			out.Next = us[i-1].Username
			break
		}
		out.Users = append(out.Users, s.userRow(ctx, u))
	}
	return out, nil
}

func (s *Service) userRow(ctx context.Context, u store.UserListing) UserRow {
	r := UserRow{UserID: u.ID, Username: u.Username, CreatedAt: u.CreatedAt, Devices: u.Devices, LastLoginAt: u.LastLoginAt}
	if s.cfg.Presence != nil {
		r.Online, r.LastSeen = s.cfg.Presence(ctx, u.ID)
	}
	return r
}

// user finds a user by username, then by id.
func (s *Service) user(ctx context.Context, name string) (store.User, error) {
	if name == "" {
		return store.User{}, chat.Errorf(schema.CodeBadRequest, "name a user: username or user id")
	}
	u, err := s.cfg.Store.UserByUsername(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		u, err = s.cfg.Store.UserByID(ctx, name)
	}
	if errors.Is(err, store.ErrNotFound) {
		return u, chat.Errorf(schema.CodeNotFound, "no user with username or id %q", name)
	}
	return u, chat.Translate(err, "user", chat.RetryRequest)
}

func (s *Service) showUser(ctx context.Context, data []byte) (any, error) {
	var req UserRequest
	if err := decode(data, &req); err != nil {
		return nil, err
	}
	u, err := s.user(ctx, req.User)
	if err != nil {
		return nil, err
	}
	ds, err := s.cfg.Store.DeviceActivity(ctx, u.ID)
	if err != nil {
		return nil, chat.Translate(err, "devices", chat.RetryRequest)
	}
	blocked, err := s.cfg.Store.BlockedUsers(ctx, u.ID)
	if err != nil {
		return nil, chat.Translate(err, "blocks", chat.RetryRequest)
	}
	out := UserReply{LastSeenPrivacy: or(u.LastSeenPrivacy, "everyone"), OnlinePrivacy: or(u.OnlinePrivacy, "everyone"),
		DeviceList: []DeviceRow{}, Blocks: len(blocked), Groups: []UserGroupRow{}}
	row := store.UserListing{User: u}
	for _, d := range ds {
		out.DeviceList = append(out.DeviceList, DeviceRow{DeviceID: d.ID, Name: d.Name, CreatedAt: d.CreatedAt,
			LastRefreshAt: d.LastRefreshAt, RevokedAt: d.RevokedAt})
		if d.RevokedAt == 0 {
			row.Devices++
		}
		row.LastLoginAt = max(row.LastLoginAt, d.CreatedAt)
	}
	out.UserRow = s.userRow(ctx, row)
	if s.groups != nil {
		gs, err := s.groups.UserGroups(ctx, u.ID)
		if err != nil {
			return nil, chat.Translate(err, "groups", chat.RetryRequest)
		}
		for _, g := range gs {
			out.Groups = append(out.Groups, UserGroupRow{GroupID: g.ID, Name: g.Name, Role: g.Role, Members: g.MemberCount})
		}
		out.GroupsKnown = true
	}
	return out, nil
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func (s *Service) revokeDevice(ctx context.Context, data []byte) (any, error) {
	var req RevokeDeviceRequest
	if err := decode(data, &req); err != nil {
		return nil, err
	}
	if req.DeviceID == "" {
		return nil, chat.Errorf(schema.CodeBadRequest, "name the device: device_id (natter users show USER lists them)")
	}
	u, err := s.user(ctx, req.User)
	if err != nil {
		return nil, err
	}
	if err := s.cfg.Revoke(ctx, u.ID, req.DeviceID); err != nil {
		var e *schema.Error
		if errors.As(err, &e) && e.Code == schema.CodeNotFound {
			return nil, chat.Errorf(schema.CodeNotFound, "%s has no device %s", u.Username, req.DeviceID)
		}
		return nil, err
	}
	s.cfg.Logger.Info("operator revoked a device", "user", u.ID, "device", req.DeviceID)
	return RevokeDeviceReply{UserID: u.ID, DeviceID: req.DeviceID, Revoked: true}, nil
}

func (s *Service) groupStore() (GroupStore, error) {
	if s.groups == nil {
		return nil, chat.Errorf(schema.CodeUnavailable, "this node's store has no groups")
	}
	return s.groups, nil
}

func (s *Service) listGroups(ctx context.Context, data []byte) (any, error) {
	var req ListGroupsRequest
	if err := decode(data, &req); err != nil {
		return nil, err
	}
	limit, err := limitOf(req.Limit)
	if err != nil {
		return nil, err
	}
	gst, err := s.groupStore()
	if err != nil {
		return nil, err
	}
	gs, err := gst.ListGroups(ctx, req.After, limit+1)
	if err != nil {
		return nil, chat.Translate(err, "groups", chat.RetryRequest)
	}
	out := ListGroupsReply{Groups: []GroupRow{}}
	names := map[string]string{}
	for i, g := range gs {
		if i == limit {
			out.Next = gs[i-1].ID
			break
		}
		r, err := s.groupRow(ctx, g, names)
		if err != nil {
			return nil, err
		}
		out.Groups = append(out.Groups, r)
	}
	return out, nil
}

func (s *Service) groupRow(ctx context.Context, g store.GroupListing, names map[string]string) (GroupRow, error) {
	name, err := s.username(ctx, g.CreatedBy, names)
	return GroupRow{GroupID: g.ID, Name: g.Name, Members: g.MemberCount, CreatedBy: g.CreatedBy, CreatedByName: name,
		CreatedAt: g.CreatedAt, LastMessageAt: g.LastMessageAt, LastSeq: g.LastSeq}, err
}

// username is id's username through the cache names; "" for a user
// that is gone.
func (s *Service) username(ctx context.Context, id string, names map[string]string) (string, error) {
	if n, ok := names[id]; ok {
		return n, nil
	}
	u, err := s.cfg.Store.UserByID(ctx, id)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return "", chat.Translate(err, "user", chat.RetryRequest)
	}
	names[id] = u.Username
	return u.Username, nil
}

func (s *Service) showGroup(ctx context.Context, data []byte) (any, error) {
	var req GroupRequest
	if err := decode(data, &req); err != nil {
		return nil, err
	}
	if req.GroupID == "" {
		return nil, chat.Errorf(schema.CodeBadRequest, "name a group: group_id (natter groups lists them)")
	}
	gst, err := s.groupStore()
	if err != nil {
		return nil, err
	}
	g, err := gst.Group(ctx, req.GroupID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, chat.Errorf(schema.CodeNotFound, "no group %q", req.GroupID)
	}
	if err != nil {
		return nil, chat.Translate(err, "group", chat.RetryRequest)
	}
	l := store.GroupListing{Group: g}
	if l.LastSeq, err = s.cfg.Store.LastSeq(ctx, g.ConversationID); err != nil {
		return nil, chat.Translate(err, "group's last message", chat.RetryRequest)
	}
	if l.LastSeq > 0 {
		m, err := s.cfg.Store.Message(ctx, g.ConversationID, l.LastSeq)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, chat.Translate(err, "group's last message", chat.RetryRequest)
		}
		l.LastMessageAt = m.ServerTS
	}
	names := map[string]string{}
	row, err := s.groupRow(ctx, l, names)
	if err != nil {
		return nil, err
	}
	ms, err := gst.Members(ctx, g.ID)
	if err != nil {
		return nil, chat.Translate(err, "members", chat.RetryRequest)
	}
	out := GroupReply{GroupRow: row, MemberList: []MemberRow{}}
	for _, m := range ms {
		name, err := s.username(ctx, m.UserID, names)
		if err != nil {
			return nil, err
		}
		out.MemberList = append(out.MemberList, MemberRow{UserID: m.UserID, Username: name, Role: m.Role, JoinedAt: m.JoinedAt})
	}
	return out, nil
}
