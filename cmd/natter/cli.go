package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/term"

	nclient "github.com/natter-chat/natter/client"
)

// The commands for people (register, login, send, tail, chat, ...) and
// for operators (streams, deadletter). Each gets the process's standard
// streams through cliIO, so tests can run them in-process too.

const cliUsage = `
For people (a server's URL from --server, $NATTER_SERVER or the last login):
  natter register USERNAME  create an account (password from the terminal or stdin)
  natter login USERNAME     log in as a new device (its tokens kept, mode 0600, in the config directory)
  natter logout             revoke this device and forget its tokens
  natter whoami             who is logged in, on which server, where the tokens are
  natter send USER TEXT     send a message (USER: a user id or @username)
  natter conversations      the conversation list: peer, last message, unread, when
  natter history USER       a conversation's recent messages with their ticks
  natter tail               follow the inbox live, resuming where the last tail stopped
  natter chat USER          an interactive chat: history, live messages, ticks, typing

For operators (a node's NATS, as for natter status):
  natter streams            streams, consumers, lag and dead letters
  natter deadletter ls|show SEQ|replay SEQ
                            what consumers gave up on, and replaying it
  natter users [show USER | revoke-device USER DEVICE]
                            accounts: devices, last login, presence, groups
  natter groups [show GROUP_ID]
                            groups: members, roles, last message

Listing commands take --json for scripts (one JSON document, or one
object per line for tail).
`

// cliIO is where a command reads and writes.
type cliIO struct {
	in       io.Reader
	out, err io.Writer
}

func stdIO() cliIO { return cliIO{in: os.Stdin, out: os.Stdout, err: os.Stderr} }

// cliCommands are the commands of this file's family, by name.
var cliCommands = map[string]func(ctx context.Context, args []string, cio cliIO) error{
	"register":      cliRegister,
	"login":         cliLogin,
	"logout":        cliLogout,
	"whoami":        cliWhoami,
	"send":          cliSend,
	"conversations": cliConversations,
	"history":       cliHistory,
	"tail":          cliTail,
	"chat":          cliChat,
	"streams":       cliStreams,
	"deadletter":    cliDeadLetter,
	"users":         cliUsers,
	"groups":        cliGroups,
}

// errNotLoggedIn tells the person what to do.
var errNotLoggedIn = errors.New("not logged in: run natter login USERNAME")

// personFlags are the flags every command for people takes.
type personFlags struct {
	fs     *flag.FlagSet
	server *string
	json   *bool
}

func newPersonFlags(name, args string) personFlags {
	fs := flag.NewFlagSet("natter "+name, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: natter %s %s\n", name, args)
		fs.PrintDefaults()
	}
	return personFlags{fs: fs,
		server: fs.String("server", "", "natter server URL (default $NATTER_SERVER, else the server of the last login, else http://127.0.0.1:8080)"),
		json:   fs.Bool("json", false, "print JSON for scripts instead of a table"),
	}
}

// parse parses args, allowing flags after positional arguments too
// (natter send @bob hi --json), and checks the count of positionals.
func (p personFlags) parse(args []string, min, max int) ([]string, error) {
	var pos []string
	for {
		if err := p.fs.Parse(args); err != nil {
			return nil, err
		}
		args = p.fs.Args()
		if len(args) == 0 {
			break
		}
		if args[0] == "--" {
			pos = append(pos, args[1:]...)
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	if len(pos) < min || (max >= 0 && len(pos) > max) {
		p.fs.Usage()
		return nil, fmt.Errorf("natter %s: wrong number of arguments", strings.TrimPrefix(p.fs.Name(), "natter "))
	}
	return pos, nil
}

// serverURL picks the server: the flag, the environment, the stored
// login, the default.
func (p personFlags) serverURL(creds *credentials) string {
	switch {
	case *p.server != "":
		return strings.TrimRight(*p.server, "/")
	case os.Getenv("NATTER_SERVER") != "":
		return strings.TrimRight(os.Getenv("NATTER_SERVER"), "/")
	case creds != nil && creds.Server != "":
		return creds.Server
	}
	return "http://127.0.0.1:8080"
}

// session opens the stored login as a client that refreshes its token
// transparently and writes the rotated tokens back.
func (p personFlags) session() (*nclient.Client, *credentialStore, error) {
	st, err := openCredentialStore()
	if err != nil {
		return nil, nil, err
	}
	creds, err := st.load()
	if err != nil {
		return nil, nil, err
	}
	if creds == nil {
		return nil, nil, errNotLoggedIn
	}
	server := p.serverURL(creds)
	if server != creds.Server {
		return nil, nil, fmt.Errorf("logged in on %s, not %s: run natter login --server %s USERNAME", creds.Server, server, server)
	}
	c := nclient.New(server, nclient.Options{Session: creds.Session, Shared: st.sharedRefresh})
	return c, st, nil
}

// explain turns a server refusal into what the person should do.
func explain(err error) error {
	switch nclient.Code(err) {
	case "unauthorized":
		return fmt.Errorf("%w (log in again: natter login USERNAME)", err)
	case "token_expired":
		return fmt.Errorf("%w (the login expired: natter login USERNAME)", err)
	}
	if errors.Is(err, nclient.ErrNoSession) {
		return errNotLoggedIn
	}
	return err
}

// resolveUser finds a user by "@username", or by id, then username.
func resolveUser(ctx context.Context, c *nclient.Client, arg string) (nclient.User, error) {
	if name, ok := strings.CutPrefix(arg, "@"); ok {
		u, err := c.UserByName(ctx, name)
		if nclient.Code(err) == "not_found" {
			return u, fmt.Errorf("no user @%s", name)
		}
		return u, explain(err)
	}
	u, err := c.User(ctx, arg)
	if nclient.Code(err) == "not_found" {
		if u, err = c.UserByName(ctx, arg); nclient.Code(err) == "not_found" {
			return u, fmt.Errorf("no user with id or username %q", arg)
		}
	}
	return u, explain(err)
}

// names caches user ids to usernames for display.
type names struct {
	c     *nclient.Client
	me    string
	byID  map[string]string
	local bool // "you" for the caller
}

func newNames(c *nclient.Client) *names {
	return &names{c: c, me: c.Session().UserID, byID: map[string]string{}, local: true}
}

func (n *names) name(ctx context.Context, id string) string {
	if n.local && id == n.me {
		return "you"
	}
	if s, ok := n.byID[id]; ok {
		return s
	}
	s := id
	if u, err := n.c.User(ctx, id); err == nil && u.Username != "" {
		s = u.Username
	}
	n.byID[id] = s
	return s
}

// readPassword reads a password without echo from a terminal, else one
// line from in (for scripts: echo "$PW" | natter login alice).
func readPassword(cio cliIO, prompt string) (string, error) {
	if f, ok := cio.in.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(cio.err, prompt)
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(cio.err)
		if err != nil {
			return "", fmt.Errorf("read the password: %w", err)
		}
		return string(b), nil
	}
	line, err := bufio.NewReader(cio.in).ReadString('\n')
	if err != nil && (err != io.EOF || line == "") {
		return "", fmt.Errorf("read the password from stdin: %w", err)
	}
	return strings.TrimRight(line, "\r\n"), nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// when renders a millisecond timestamp for a person: the time today, the
// date otherwise.
func when(ms int64) string {
	if ms == 0 {
		return ""
	}
	t := time.UnixMilli(ms).Local()
	now := time.Now()
	if y, m, d := t.Date(); y == now.Year() && m == now.Month() && d == now.Day() {
		return t.Format("15:04")
	}
	if t.Year() == now.Year() {
		return t.Format("Jan 2 15:04")
	}
	return t.Format("2006-01-02")
}

// short cuts s to n runes, on one line.
func short(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
