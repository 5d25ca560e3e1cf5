package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natter-chat/natter/internal/testnode"
	"github.com/natter-chat/natter/operator"
)

// opsFlagsFor are the flags that log an operator command in to node: its
// NATS URL without credentials, and its data directory, where the CLI
// reads the operator password.
func opsFlagsFor(t *testing.T, node *testnode.Node) []string {
	t.Helper()
	u, err := url.Parse(node.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	u.User = nil
	return []string{"--nats", u.String(), "--data", node.DataDir()}
}

// tableRow finds the table row whose first cell is first and returns its
// cells.
func tableRow(t *testing.T, out, first string) []string {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		cells := strings.Split(strings.Trim(line, "│ "), "│")
		if len(cells) > 1 && strings.TrimSpace(cells[0]) == first {
			for i := range cells {
				cells[i] = strings.TrimSpace(cells[i])
			}
			return cells
		}
	}
	t.Fatalf("no row %q in:\n%s", first, out)
	return nil
}

// natter users and natter groups show an operator the accounts and
// groups of a running node: readable tables with aligned columns, --json,
// paging that shows everyone once, a prefix filter, one user or group in
// full, and revoking a device, which closes its connection.
func TestCLIUsersAndGroups(t *testing.T) {
	node := testnode.Start(t, testnode.Options{NATS: true})
	ctx, cancel := context.WithTimeout(context.Background(), 4*cliWait)
	defer cancel()
	c := node.Client()
	defer c.Close()
	const pw = "a long enough password"
	names := []string{"ann", "anton", "bea", "carl", "dora"}
	users := map[string]testnode.User{}
	devices := map[string][]testnode.Device{}
	for _, n := range names {
		count := 0
		if n == "ann" {
			count = 2
		} else if n != "dora" {
			count = 1
		}
		u, ds, err := c.NewUser(ctx, n, pw, count)
		if err != nil {
			t.Fatal(err)
		}
		users[n], devices[n] = u, ds
	}
	ann, annPhone, annLaptop := users["ann"], devices["ann"][0], devices["ann"][1]
	// ann is online on her laptop, and blocks carl.
	ws, _, err := node.Dial(ctx, annLaptop.Access, testnode.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	ws.StartReading()
	if err := c.Call(ctx, http.StatusOK, "PUT", "/v1/me/blocks/"+users["carl"].ID, annPhone.Access, nil, nil); err != nil {
		t.Fatal(err)
	}
	// Two groups: ann's with bea and anton (bea made admin), anton's with carl.
	var g1, g2 struct {
		GroupID string `json:"group_id"`
	}
	if err := c.Call(ctx, http.StatusCreated, "POST", "/v1/groups", annPhone.Access,
		map[string]any{"name": "ann's friends", "member_ids": []string{users["bea"].ID, users["anton"].ID}}, &g1); err != nil {
		t.Fatal(err)
	}
	if err := c.Call(ctx, http.StatusOK, "PATCH", "/v1/groups/"+g1.GroupID+"/members/"+users["bea"].ID, annPhone.Access,
		map[string]string{"role": "admin"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Call(ctx, http.StatusCreated, "POST", "/v1/groups", devices["anton"][0].Access,
		map[string]any{"name": "work", "member_ids": []string{users["carl"].ID}}, &g2); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Send(ctx, devices["anton"][0].Access, testnode.SendRequest{ClientMessageID: "w1", RecipientID: g2.GroupID,
		MessageType: "group", Content: "hello work"}); err != nil {
		t.Fatal(err)
	}

	op := newPerson(t, node, "operator")
	flags := opsFlagsFor(t, node)
	users1 := func(args ...string) string {
		t.Helper()
		return op.must("", append(append([]string{"users"}, args...), flags...)...)
	}

	// The table: a header, aligned columns, one row per user in username
	// order, presence and human times.
	out := users1()
	header := regexp.MustCompile(`USERNAME\s*│\s*USER ID\s*│\s*CREATED\s*│\s*DEVICES\s*│\s*LAST LOGIN\s*│\s*PRESENCE`)
	if !header.MatchString(out) {
		t.Fatalf("no header in:\n%s", out)
	}
	var order []string
	widths := map[int]bool{}
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "│") {
			widths[len([]rune(line))] = true
			if f := strings.TrimSpace(strings.Split(strings.Trim(line, "│"), "│")[0]); f != "USERNAME" {
				order = append(order, f)
			}
		}
	}
	if !slices.Equal(order, names) {
		t.Errorf("rows %v, want %v in username order", order, names)
	}
	if len(widths) != 1 {
		t.Errorf("rows of different widths (columns not aligned):\n%s", out)
	}
	eventually(t, "ann online in natter users", func() (string, bool) {
		out := users1()
		return out, tableRow(t, out, "ann")[5] == "online"
	})
	if row := tableRow(t, out, "ann"); row[1] != ann.ID || row[2] != "just now" || row[3] != "2" || row[4] != "just now" {
		t.Errorf("ann's row = %q, want her id, created just now, 2 devices, logged in just now", row)
	}
	if row := tableRow(t, out, "dora"); row[3] != "0" || row[4] != "-" || row[5] != "never seen" {
		t.Errorf("dora's row = %q, want 0 devices, no login, never seen", row)
	}
	if !strings.Contains(out, "5 users") {
		t.Errorf("no count under the table:\n%s", out)
	}

	// --json, and paging: every user once across pages of 2.
	var seen []string
	after := ""
	for page := 0; ; page++ {
		args := []string{"--json", "--limit", "2"}
		if after != "" {
			args = append(args, "--after", after)
		}
		var r operator.ListUsersReply
		if err := json.Unmarshal([]byte(users1(args...)), &r); err != nil {
			t.Fatal(err)
		}
		if len(r.Users) > 2 || page > 3 {
			t.Fatalf("page %d: %d users", page, len(r.Users))
		}
		for _, u := range r.Users {
			seen = append(seen, u.Username)
			if u.UserID != users[u.Username].ID || u.CreatedAt == 0 {
				t.Errorf("json row %+v", u)
			}
		}
		if r.Next == "" {
			break
		}
		after = r.Next
	}
	if !slices.Equal(seen, names) {
		t.Errorf("paged through %v, want %v", seen, names)
	}
	if out := users1("--limit", "2"); !strings.Contains(out, "2 users shown; more: natter users --after anton --limit 2") {
		t.Errorf("a first page says nothing of the next:\n%s", out)
	}
	// The filter.
	out = users1("--match", "an")
	if tableRow(t, out, "ann")[0] != "ann" || tableRow(t, out, "anton")[0] != "anton" || strings.Contains(out, "bea") {
		t.Errorf("--match an:\n%s", out)
	}
	if out := users1("--match", "zz"); !strings.Contains(out, `no user's name starts with "zz"`) {
		t.Errorf("--match zz:\n%s", out)
	}

	// One user in full, by username or id.
	out = users1("show", "ann")
	for _, want := range []string{ann.ID, "online", "1 user blocked", "ann-0", "ann-1", "ann's friends", g1.GroupID} {
		if !strings.Contains(out, want) {
			t.Errorf("users show ann lacks %q:\n%s", want, out)
		}
	}
	if row := tableRow(t, out, annLaptop.DeviceID); row[1] != "ann-1" || row[4] != "active" {
		t.Errorf("laptop row = %q", row)
	}
	var full operator.UserReply
	if err := json.Unmarshal([]byte(users1("show", ann.ID, "--json")), &full); err != nil {
		t.Fatal(err)
	}
	if full.Username != "ann" || len(full.DeviceList) != 2 || full.Blocks != 1 || !full.GroupsKnown ||
		len(full.Groups) != 1 || full.Groups[0].Role != "admin" || full.Groups[0].Members != 3 {
		t.Errorf("users show --json = %+v", full)
	}
	if _, err := op.run("", append([]string{"users", "show", "nobody"}, flags...)...); err == nil ||
		!strings.Contains(err.Error(), `no user with username or id "nobody"`) || !strings.Contains(err.Error(), "natter users --match") {
		t.Errorf("show nobody: %v", err)
	}

	// Revoking a device logs it out at once: its WebSocket closes 4001
	// and its token stops working; the other device is untouched.
	if out := users1("revoke-device", "ann", annLaptop.DeviceID); !strings.Contains(out, "revoked device "+annLaptop.DeviceID) {
		t.Errorf("revoke-device:\n%s", out)
	}
	if code, err := ws.WaitClosed(ctx); err != nil || code != 4001 {
		t.Errorf("the revoked device's WebSocket: code %d, %v; want closed 4001", code, err)
	}
	if r, err := c.Do(ctx, "GET", "/v1/me", annLaptop.Access, nil); err != nil || r.Status != http.StatusUnauthorized {
		t.Errorf("the revoked token: %v %v, want 401", r, err)
	}
	if r, err := c.Do(ctx, "GET", "/v1/me", annPhone.Access, nil); err != nil || r.Status != http.StatusOK {
		t.Errorf("the other device: %v %v, want 200", r, err)
	}
	if row := tableRow(t, users1("show", "ann"), annLaptop.DeviceID); !strings.HasPrefix(row[4], "revoked") {
		t.Errorf("laptop after revoke = %q", row)
	}
	if _, err := op.run("", append([]string{"users", "revoke-device", "bea", annPhone.DeviceID}, flags...)...); err == nil ||
		!strings.Contains(err.Error(), "bea has no device") {
		t.Errorf("revoking another user's device through bea: %v", err)
	}

	// Groups: the list and one group with its members and roles.
	groups := func(args ...string) string {
		t.Helper()
		return op.must("", append(append([]string{"groups"}, args...), flags...)...)
	}
	out = groups()
	if row := tableRow(t, out, "ann's friends"); row[1] != g1.GroupID || row[2] != "3" || row[3] != "ann" || row[5] != "-" {
		t.Errorf("group row = %q, want id, 3 members, by ann, no message", row)
	}
	if row := tableRow(t, out, "work"); row[2] != "2" || row[3] != "anton" || row[5] != "just now" {
		t.Errorf("work row = %q, want 2 members, by anton, a message just now", row)
	}
	var gl operator.ListGroupsReply
	if err := json.Unmarshal([]byte(groups("--json", "--limit", "1")), &gl); err != nil {
		t.Fatal(err)
	}
	if len(gl.Groups) != 1 || gl.Groups[0].GroupID != g1.GroupID || gl.Next != g1.GroupID {
		t.Errorf("groups --limit 1 = %+v", gl)
	}
	out = groups("show", g1.GroupID)
	for n, role := range map[string]string{"ann": "admin", "bea": "admin", "anton": "member"} {
		if row := tableRow(t, out, n); row[1] != users[n].ID || row[2] != role {
			t.Errorf("member %s = %q, want role %s", n, row, role)
		}
	}
	var gr operator.GroupReply
	if err := json.Unmarshal([]byte(groups("show", g2.GroupID, "--json")), &gr); err != nil {
		t.Fatal(err)
	}
	if gr.Name != "work" || gr.LastSeq != 1 || gr.LastMessageAt == 0 || len(gr.MemberList) != 2 || gr.MemberList[0].Username != "anton" {
		t.Errorf("groups show --json = %+v", gr)
	}
	if _, err := op.run("", append([]string{"groups", "show", "G-nope"}, flags...)...); err == nil || !strings.Contains(err.Error(), "natter groups lists") {
		t.Errorf("show an unknown group: %v", err)
	}

	// Without the operator's credentials nothing is shown, and the error
	// says what to pass.
	if _, err := op.run("", "users", "--nats", flags[1], "--data", t.TempDir()); err == nil || !strings.Contains(err.Error(), "refused the operator login") {
		t.Errorf("users without credentials: %v", err)
	}
	if _, err := op.run("", "users", "--nats", "nats://127.0.0.1:1", "--data", node.DataDir()); err == nil || !strings.Contains(err.Error(), "no natter running") {
		t.Errorf("users with nothing listening: %v", err)
	}
	// Wrong arguments are told before any login is tried.
	for _, args := range [][]string{{"users", "show"}, {"users", "frob"}, {"groups", "show", "a", "b"}} {
		if _, err := op.run("", append(args, "--nats", "nats://127.0.0.1:1")...); err == nil || !strings.Contains(err.Error(), "wrong arguments") {
			t.Errorf("natter %v: %v, want wrong arguments", args, err)
		}
	}
}

// A user's NATS-native credentials cannot reach the operator API:
// nats-server refuses the publish (a permissions violation) and no answer
// comes, for every operator subject; the operator's own login gets one.
func TestOperatorAPIRefusesUsers(t *testing.T) {
	node := testnode.Start(t, testnode.Options{NATS: true})
	ctx, cancel := context.WithTimeout(context.Background(), 2*cliWait)
	defer cancel()
	c := node.Client()
	defer c.Close()
	_, ds, err := c.NewUser(ctx, "mallory", "a long enough password", 1)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(node.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var asyncErrs []error
	nc, err := nats.Connect("nats://"+u.Host, nats.Token(ds[0].Access), nats.CustomInboxPrefix("_INBOX."+ds[0].DeviceID),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			mu.Lock()
			asyncErrs = append(asyncErrs, err)
			mu.Unlock()
		}))
	if err != nil {
		t.Fatalf("mallory cannot log in to NATS: %v", err)
	}
	defer nc.Close()
	for _, subject := range []string{operator.SubjectUsers, operator.SubjectUser, operator.SubjectRevokeDevice,
		operator.SubjectGroups, operator.SubjectGroup, operator.SubjectPrefix + "anything"} {
		_, err := nc.Request(subject, []byte(`{"user":"mallory","device_id":"x"}`), time.Second)
		if err == nil {
			t.Errorf("mallory's request on %s was answered", subject)
			continue
		}
		deadline := time.Now().Add(cliWait)
		for {
			mu.Lock()
			found := slices.ContainsFunc(asyncErrs, func(e error) bool {
				return errors.Is(e, nats.ErrPermissionViolation) && strings.Contains(e.Error(), subject)
			})
			mu.Unlock()
			if found {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no permissions violation for publish to %s; errors: %v", subject, asyncErrs)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// The operator gets an answer on the same connection kind.
	op, err := nats.Connect(node.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	defer op.Close()
	var r operator.ListUsersReply
	if err := opsRequest(ctx, op, operator.SubjectUsers, operator.ListUsersRequest{}, &r); err != nil || len(r.Users) != 1 || r.Users[0].Username != "mallory" {
		t.Fatalf("operator's list: %+v, %v", r, err)
	}
	// Bad input gets bad_request and changes nothing.
	var e *opsError
	if err := opsRequest(ctx, op, operator.SubjectUsers, operator.ListUsersRequest{Limit: -1}, &r); !errors.As(err, &e) || e.code != "bad_request" {
		t.Errorf("limit -1: %v, want bad_request", err)
	}
	m, err := op.RequestWithContext(ctx, operator.SubjectUser, []byte(`{"user": 7`))
	if err != nil || !strings.Contains(string(m.Data), `"bad_request"`) {
		t.Errorf("malformed JSON: %v %v", m, err)
	}
	if err := opsRequest(ctx, op, operator.SubjectRevokeDevice, operator.RevokeDeviceRequest{User: "mallory"}, &r); !errors.As(err, &e) || e.code != "bad_request" {
		t.Errorf("revoke without a device: %v", err)
	}
	if r, err := c.Do(ctx, "GET", "/v1/me", ds[0].Access, nil); err != nil || r.Status != http.StatusOK {
		t.Errorf("mallory's device after the refused requests: %v %v, want still logged in", r, err)
	}
}
