package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/jedib0t/go-pretty/v6/table"
	"github.com/jedib0t/go-pretty/v6/text"
	"github.com/nats-io/nats.go"

	"github.com/natter-chat/natter/operator"
	"github.com/natter-chat/natter/schema"
)

// natter users and natter groups: the operator API (package operator)
// over the node's NATS, logged in as the operator like natter status.

const usersHelp = `Usage: natter users [ls] [--match PREFIX] [--limit N] [--after USERNAME]
       natter users show USER
       natter users revoke-device USER DEVICE_ID
  (each with [--nats URL --data DIR | --password PW | --creds FILE] [--json])

USER is a username or a user id.

  ls              users by username: id, created, active devices, last
                  login, online or last seen (--match: usernames starting
                  with PREFIX; a page is --limit rows, the next one
                  starts --after the last username shown)
  show USER       one user: presence, privacy, every device with its last
                  token refresh (revoked ones too), blocks, groups
  revoke-device USER DEVICE_ID
                  log a device out at once: its tokens stop working and
                  its connections close (4001), on every node
`

const groupsHelp = `Usage: natter groups [ls] [--limit N] [--after GROUP_ID]
       natter groups show GROUP_ID
  (each with [--nats URL --data DIR | --password PW | --creds FILE] [--json])

  ls              groups in creation order: name, id, members, creator,
                  created, last message
  show GROUP_ID   one group and its members with their roles
`

// opsConn logs in to the node's NATS as the operator, with errors that
// say what to do.
func opsConn(l natsLogin, name string) (*nats.Conn, error) {
	auth, err := statusAuth(*l.url, *l.dataDir, *l.user, *l.password, *l.creds)
	if err != nil {
		return nil, fmt.Errorf("operator credentials in --data %s: %w", *l.dataDir, err)
	}
	nc, err := nats.Connect(*l.url, nats.Timeout(5*time.Second), nats.Name(name), auth)
	switch {
	case err == nil:
		return nc, nil
	case errors.Is(err, nats.ErrAuthorization) || strings.Contains(strings.ToLower(err.Error()), "authorization"):
		return nil, fmt.Errorf("the NATS at %s refused the operator login: pass the node's --data DIR (its %s), or --password / --creds: %w",
			*l.url, "keys/nats-operator.password", err)
	case errors.Is(err, nats.ErrNoServers):
		return nil, fmt.Errorf("no natter running with its NATS at %s (--data %s): start it (natter serve --nats-listen 127.0.0.1:4222) or pass --nats URL: %w",
			*l.url, *l.dataDir, err)
	}
	return nil, fmt.Errorf("connect to %s: %w", *l.url, err)
}

// opsError is a refusal of the operator API.
type opsError struct{ code, message string }

func (e *opsError) Error() string { return e.message + " (" + e.code + ")" }

// opsRequest sends req to subject and decodes the answer into reply.
func opsRequest(ctx context.Context, nc *nats.Conn, subject string, req, reply any) error {
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	m, err := nc.RequestWithContext(ctx, subject, body)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return fmt.Errorf("nothing answers %s on %s: is this natter's NATS, and is natter as new as this command? (%w)", subject, nc.ConnectedUrlRedacted(), err)
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout):
		return fmt.Errorf("natter did not answer %s in time: see its log (%w)", subject, err)
	case err != nil:
		return fmt.Errorf("%s: %w", subject, err)
	}
	var refusal operator.ErrorReply
	if err := json.Unmarshal(m.Data, &refusal); err == nil && refusal.Error != nil {
		return &opsError{code: refusal.Error.Code, message: refusal.Error.Message}
	}
	if err := json.Unmarshal(m.Data, reply); err != nil {
		return fmt.Errorf("%s: decode the answer: %w", subject, err)
	}
	return nil
}

// opsCommand runs one operator subcommand: flags, login, a request.
type opsCommand struct {
	o  opsFlags
	nc *nats.Conn
}

// startOps parses the flags and the subcommand, which must be one of
// arity's with that many arguments ("ls" when none is given), and only
// then logs in.
func startOps(ctx context.Context, name, usage string, args []string, arity map[string]int, extra func(o opsFlags)) (
	c *opsCommand, sub string, pos []string, _ context.Context, done func(), err error) {
	o := newOpsFlags(name, "")
	o.fs.Usage = func() { fmt.Fprint(o.fs.Output(), usage, "\nFlags:\n"); o.fs.PrintDefaults() }
	if extra != nil {
		extra(o)
	}
	if pos, err = o.parse(args); err != nil {
		return nil, "", nil, nil, nil, err
	}
	sub = "ls"
	if len(pos) > 0 {
		sub, pos = pos[0], pos[1:]
	}
	if n, ok := arity[sub]; !ok || n != len(pos) {
		o.fs.Usage()
		return nil, "", nil, nil, nil, fmt.Errorf("natter %s: unknown subcommand or wrong arguments: %q", name, append([]string{sub}, pos...))
	}
	nc, err := opsConn(o.login, "natter "+name)
	if err != nil {
		return nil, "", nil, nil, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	return &opsCommand{o: o, nc: nc}, sub, pos, ctx, func() { cancel(); nc.Close() }, nil
}

func cliUsers(ctx context.Context, args []string, cio cliIO) error {
	var match, after *string
	var limit *int
	c, sub, pos, ctx, done, err := startOps(ctx, "users", usersHelp, args, map[string]int{"ls": 0, "show": 1, "revoke-device": 2}, func(o opsFlags) {
		match = o.fs.String("match", "", "ls: only usernames starting with PREFIX")
		after = o.fs.String("after", "", "ls: start after this username (the last one of the previous page)")
		limit = o.fs.Int("limit", operator.DefaultLimit, fmt.Sprintf("ls: rows per page (at most %d)", operator.MaxLimit))
	})
	if err != nil {
		return err
	}
	defer done()
	switch sub {
	case "ls":
		var r operator.ListUsersReply
		if err := opsRequest(ctx, c.nc, operator.SubjectUsers, operator.ListUsersRequest{Match: *match, After: *after, Limit: *limit}, &r); err != nil {
			return err
		}
		if *c.o.json {
			return printJSON(cio.out, r)
		}
		printUsers(cio.out, r, *match, *limit)
		return nil
	case "show":
		var r operator.UserReply
		if err := opsRequest(ctx, c.nc, operator.SubjectUser, operator.UserRequest{User: pos[0]}, &r); err != nil {
			return usersHint(err)
		}
		if *c.o.json {
			return printJSON(cio.out, r)
		}
		printUser(cio.out, r)
		return nil
	case "revoke-device":
		var r operator.RevokeDeviceReply
		if err := opsRequest(ctx, c.nc, operator.SubjectRevokeDevice, operator.RevokeDeviceRequest{User: pos[0], DeviceID: pos[1]}, &r); err != nil {
			return usersHint(err)
		}
		if *c.o.json {
			return printJSON(cio.out, r)
		}
		fmt.Fprintf(cio.out, "revoked device %s of %s: its tokens no longer work and its connections were closed\n", r.DeviceID, pos[0])
		return nil
	}
	return nil
}

// usersHint adds where to look to a not-found answer.
func usersHint(err error) error {
	var e *opsError
	if errors.As(err, &e) && e.code == schema.CodeNotFound {
		return fmt.Errorf("%w: natter users --match PREFIX lists users, natter users show USER their devices", err)
	}
	return err
}

func printUsers(out io.Writer, r operator.ListUsersReply, match string, limit int) {
	t := newTable(out)
	t.AppendHeader(table.Row{"username", "user id", "created", "devices", "last login", "presence"})
	t.SetColumnConfigs(rightAligned(4))
	for _, u := range r.Users {
		t.AppendRow(table.Row{u.Username, u.UserID, ago(u.CreatedAt), u.Devices, orDash(ago(u.LastLoginAt)), presence(u.Online, u.LastSeen)})
	}
	t.Render()
	switch {
	case r.Next != "":
		more := "natter users --after " + r.Next
		if match != "" {
			more += " --match " + match
		}
		if limit != operator.DefaultLimit {
			more += " --limit " + strconv.Itoa(limit)
		}
		fmt.Fprintf(out, "%s shown; more: %s\n", plural(len(r.Users), "user"), more)
	case len(r.Users) == 0 && match != "":
		fmt.Fprintf(out, "no user's name starts with %q\n", match)
	default:
		fmt.Fprintln(out, plural(len(r.Users), "user"))
	}
}

func printUser(out io.Writer, r operator.UserReply) {
	t := newTable(out)
	t.SetTitle("user " + r.Username)
	row := func(k string, v any) { t.AppendRow(table.Row{k, v}) }
	row("user id", r.UserID)
	row("created", stamp(r.CreatedAt))
	row("presence", presence(r.Online, r.LastSeen))
	row("privacy", fmt.Sprintf("last seen: %s, online: %s", r.LastSeenPrivacy, r.OnlinePrivacy))
	row("active devices", r.Devices)
	row("last login", orDash(stamp(r.LastLoginAt)))
	row("blocks", plural(r.Blocks, "user")+" blocked")
	t.Render()

	dt := newTable(out)
	dt.SetTitle("devices")
	dt.AppendHeader(table.Row{"device id", "name", "logged in", "last token refresh", "state"})
	for _, d := range r.DeviceList {
		state := "active"
		if d.RevokedAt != 0 {
			state = "revoked " + ago(d.RevokedAt)
		}
		dt.AppendRow(table.Row{d.DeviceID, orDash(d.Name), ago(d.CreatedAt), orDash(ago(d.LastRefreshAt)), state})
	}
	dt.Render()

	if !r.GroupsKnown {
		fmt.Fprintln(out, "groups: this store has no groups")
		return
	}
	if len(r.Groups) == 0 {
		fmt.Fprintln(out, "groups: none")
		return
	}
	gt := newTable(out)
	gt.SetTitle("groups")
	gt.AppendHeader(table.Row{"group id", "name", "role", "members"})
	gt.SetColumnConfigs(rightAligned(4))
	for _, g := range r.Groups {
		gt.AppendRow(table.Row{g.GroupID, g.Name, g.Role, g.Members})
	}
	gt.Render()
}

func cliGroups(ctx context.Context, args []string, cio cliIO) error {
	var after *string
	var limit *int
	c, sub, pos, ctx, done, err := startOps(ctx, "groups", groupsHelp, args, map[string]int{"ls": 0, "show": 1}, func(o opsFlags) {
		after = o.fs.String("after", "", "ls: start after this group id (the last one of the previous page)")
		limit = o.fs.Int("limit", operator.DefaultLimit, fmt.Sprintf("ls: rows per page (at most %d)", operator.MaxLimit))
	})
	if err != nil {
		return err
	}
	defer done()
	switch sub {
	case "ls":
		var r operator.ListGroupsReply
		if err := opsRequest(ctx, c.nc, operator.SubjectGroups, operator.ListGroupsRequest{After: *after, Limit: *limit}, &r); err != nil {
			return err
		}
		if *c.o.json {
			return printJSON(cio.out, r)
		}
		printGroups(cio.out, r, *limit)
		return nil
	case "show":
		var r operator.GroupReply
		if err := opsRequest(ctx, c.nc, operator.SubjectGroup, operator.GroupRequest{GroupID: pos[0]}, &r); err != nil {
			var e *opsError
			if errors.As(err, &e) && e.code == schema.CodeNotFound {
				return fmt.Errorf("%w: natter groups lists the group ids", err)
			}
			return err
		}
		if *c.o.json {
			return printJSON(cio.out, r)
		}
		printGroup(cio.out, r)
		return nil
	}
	return nil
}

func printGroups(out io.Writer, r operator.ListGroupsReply, limit int) {
	if len(r.Groups) == 0 {
		fmt.Fprintln(out, "no groups")
		return
	}
	t := newTable(out)
	t.AppendHeader(table.Row{"name", "group id", "members", "created by", "created", "last message"})
	t.SetColumnConfigs(rightAligned(3))
	for _, g := range r.Groups {
		t.AppendRow(table.Row{short(g.Name, 32), g.GroupID, g.Members, creator(g), ago(g.CreatedAt), orDash(ago(g.LastMessageAt))})
	}
	t.Render()
	if r.Next != "" {
		more := "natter groups --after " + r.Next
		if limit != operator.DefaultLimit {
			more += " --limit " + strconv.Itoa(limit)
		}
		fmt.Fprintf(out, "%s shown; more: %s\n", plural(len(r.Groups), "group"), more)
		return
	}
	fmt.Fprintln(out, plural(len(r.Groups), "group"))
}

func printGroup(out io.Writer, r operator.GroupReply) {
	t := newTable(out)
	t.SetTitle("group " + r.Name)
	row := func(k string, v any) { t.AppendRow(table.Row{k, v}) }
	row("group id", r.GroupID)
	row("created", fmt.Sprintf("%s by %s", stamp(r.CreatedAt), creator(r.GroupRow)))
	row("members", r.Members)
	last := "none yet"
	if r.LastSeq > 0 {
		last = fmt.Sprintf("%s (seq %d)", stamp(r.LastMessageAt), r.LastSeq)
	}
	row("last message", last)
	t.Render()
	mt := newTable(out)
	mt.SetTitle("members")
	mt.AppendHeader(table.Row{"username", "user id", "role", "joined"})
	for _, m := range r.MemberList {
		mt.AppendRow(table.Row{orDash(m.Username), m.UserID, m.Role, ago(m.JoinedAt)})
	}
	mt.Render()
}

func creator(g operator.GroupRow) string {
	if g.CreatedByName != "" {
		return g.CreatedByName
	}
	return g.CreatedBy
}

func rightAligned(cols ...int) []table.ColumnConfig {
	var cs []table.ColumnConfig
	for _, c := range cols {
		cs = append(cs, table.ColumnConfig{Number: c, Align: text.AlignRight})
	}
	return cs
}

func presence(online bool, lastSeen int64) string {
	switch {
	case online:
		return "online"
	case lastSeen > 0:
		return "seen " + ago(lastSeen)
	}
	return "never seen"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// ago renders a millisecond timestamp for a person as how long ago it
// was ("just now", "3 min ago", "5 h ago", "2 days ago"), and as a date
// past a month; "" for 0.
func ago(ms int64) string {
	if ms == 0 {
		return ""
	}
	d := time.Since(time.UnixMilli(ms))
	switch {
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		return fmt.Sprintf("%d min ago", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%d h ago", int(d/time.Hour))
	case d < 31*24*time.Hour:
		return fmt.Sprintf("%d days ago", int(d/(24*time.Hour)))
	}
	return time.UnixMilli(ms).Local().Format("2006-01-02")
}

// stamp is ago with the time itself, for the detail views.
func stamp(ms int64) string {
	if ms == 0 {
		return ""
	}
	return time.UnixMilli(ms).Local().Format("2006-01-02 15:04:05") + " (" + ago(ms) + ")"
}

// plural is "1 user", "2 users".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
