package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestServePostgresSettings(t *testing.T) {
	file := filepath.Join(t.TempDir(), "natter.conf")
	if err := os.WriteFile(file, []byte("store postgres\npostgres-url postgres://file@db/natter\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := parseServeFlags([]string{"-config", file})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Store != "postgres" || cfg.PostgresURL != "postgres://file@db/natter" {
		t.Fatalf("file settings not applied: store %q url %q", cfg.Store, cfg.PostgresURL)
	}
	t.Setenv("NATTER_POSTGRES_URL", "postgres://env@db/natter")
	if cfg, err = parseServeFlags([]string{"-config", file}); err != nil || cfg.PostgresURL != "postgres://env@db/natter" {
		t.Fatalf("NATTER_POSTGRES_URL not applied over the file: %q (%v)", cfg.PostgresURL, err)
	}
	if cfg, err := parseServeFlags(nil); err != nil || cfg.Store != "sqlite" {
		t.Fatalf("default store %q (%v), want sqlite", cfg.Store, err)
	}
}

// A PostgreSQL outage while natter runs loses nothing and doubles nothing:
// sends keep being acknowledged (JetStream holds them), the persistence
// consumer waits the outage out (store.ErrUnavailable) instead of
// dead-lettering, and once the database is back every acknowledged message
// is stored exactly once. The outage is real: the server refuses natter's
// role (too many connections for role, 53300) and ends its sessions
// (57P01).
func TestServeRidesOutPostgresOutage(t *testing.T) {
	admin := os.Getenv("NATTER_TEST_POSTGRES_URL")
	if admin == "" {
		t.Skip("NATTER_TEST_POSTGRES_URL not set (scripts/postgres start DIR PORT prints one)")
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	// Names of this run's own, so that runs sharing a server do not collide.
	suffix := fmt.Sprintf("%d_%d", os.Getpid(), time.Now().UnixNano()%1e9)
	role, dbName := "natter_outage_"+suffix, "natter_test_outage_"+suffix
	// Registered first, so it runs last: after natter and the reader have
	// stopped. It owns conn, which a defer would close before cleanups run.
	t.Cleanup(func() {
		defer conn.Close(ctx)
		for _, q := range []string{`DROP DATABASE IF EXISTS ` + dbName + ` WITH (FORCE)`, `DROP ROLE IF EXISTS ` + role} {
			if _, err := conn.Exec(ctx, q); err != nil {
				t.Errorf("%s: %v", q, err)
			}
		}
	})
	for _, q := range []string{
		`DROP DATABASE IF EXISTS ` + dbName + ` WITH (FORCE)`,
		`DROP ROLE IF EXISTS ` + role,
		`CREATE ROLE ` + role + ` LOGIN`, // a superuser would ignore connection limits
		`CREATE DATABASE ` + dbName + ` OWNER ` + role,
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatal(err)
	}
	u.User, u.Path = url.User(role), "/"+dbName

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	srvCtx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	// The data directory is made here, not in the goroutine: its removal
	// must be registered before the cleanup that stops serve, so it runs after.
	data := t.TempDir()
	go func() {
		served <- serve(srvCtx, []string{"--http", addr, "--data", data, "--rate-limit", "off", "--log-level", "error",
			// One try: an outage mistaken for a bad event would be dead-lettered at once.
			"--max-deliver", "1",
			"--store", "postgres", "--postgres-url", u.String()})
	}()
	t.Cleanup(func() {
		stop()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	c := &client{t: t, base: "http://" + addr}
	poll(t, "natter answers", func() bool {
		resp, err := http.Get(c.base + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	})

	alice := c.account("alice")
	bob := c.account("bob")
	send := func(i int) {
		t.Helper()
		c.call("POST", "/v1/messages", alice.token, http.StatusCreated, map[string]any{
			"client_message_id": fmt.Sprintf("m%d", i), "recipient_id": bob.id, "message_type": "user",
			"content": fmt.Sprintf("message %d", i), "timestamp": 1,
		}, nil)
	}
	// The superuser reads the database throughout: the outage is natter's role's.
	au, _ := url.Parse(admin)
	au.Path = "/" + dbName
	dc, err := pgx.Connect(ctx, au.String())
	if err != nil {
		t.Fatal(err)
	}
	defer dc.Close(ctx)
	stored := func() (n, distinct int) {
		t.Helper()
		if err := dc.QueryRow(ctx, `SELECT count(*), count(DISTINCT client_message_id) FROM messages`).Scan(&n, &distinct); err != nil {
			t.Fatal(err)
		}
		return n, distinct
	}
	send(0)
	poll(t, "the first message is stored", func() bool { n, _ := stored(); return n == 1 })

	// The outage: natter's role may not connect, its sessions end.
	for _, q := range []string{
		`ALTER ROLE ` + role + ` CONNECTION LIMIT 0`,
		`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '` + role + `'`,
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	const during = 20
	for i := 1; i <= during; i++ {
		send(i) // acknowledged: JetStream has it
	}
	var blocked int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE usename = $1`, role).Scan(&blocked); err != nil || blocked != 0 {
		t.Fatalf("natter still has %d sessions during the outage (%v): the outage is not real", blocked, err)
	}

	time.Sleep(time.Second) // let persist meet the outage (it waits; nothing to poll for)
	if n, _ := stored(); n != 1 {
		t.Fatalf("%d messages stored during the outage, want 1: the outage is not real", n)
	}
	if _, err := conn.Exec(ctx, `ALTER ROLE `+role+` CONNECTION LIMIT -1`); err != nil {
		t.Fatal(err)
	}
	poll(t, "every acknowledged message stored once after the outage", func() bool {
		n, distinct := stored()
		return n == during+1 && distinct == during+1
	})
	var hist struct {
		Messages []struct{ Seq int64 } `json:"messages"`
	}
	conv := c.conversationWith(alice.token, bob.id)
	c.call("GET", "/v1/conversations/"+conv+"/messages?limit=100", bob.token, http.StatusOK, nil, &hist)
	if len(hist.Messages) != during+1 || hist.Messages[0].Seq != during+1 {
		t.Fatalf("bob's history has %d messages (newest seq %v), want %d", len(hist.Messages), hist.Messages, during+1)
	}
}

type client struct {
	t    *testing.T
	base string
}

type account struct{ id, token string }

func (c *client) account(name string) account {
	c.t.Helper()
	var reg struct {
		UserID string `json:"user_id"`
	}
	c.call("POST", "/v1/auth/register", "", http.StatusCreated, map[string]string{"username": name, "password": "password123"}, &reg)
	var login struct {
		AccessToken string `json:"access_token"`
	}
	c.call("POST", "/v1/auth/login", "", http.StatusOK, map[string]string{"username": name, "password": "password123"}, &login)
	return account{id: reg.UserID, token: login.AccessToken}
}

func (c *client) conversationWith(token, peer string) string {
	c.t.Helper()
	var conv struct {
		ID string `json:"conversation_id"`
	}
	c.call("POST", "/v1/conversations", token, http.StatusOK, map[string]string{"peer_id": peer}, &conv)
	return conv.ID
}

func (c *client) call(method, path, token string, want int, body, out any) {
	c.t.Helper()
	var rd *bytes.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	var raw bytes.Buffer
	raw.ReadFrom(resp.Body)
	if resp.StatusCode != want {
		c.t.Fatalf("%s %s: %d %s, want %d", method, path, resp.StatusCode, strings.TrimSpace(raw.String()), want)
	}
	if out != nil {
		if err := json.Unmarshal(raw.Bytes(), out); err != nil {
			c.t.Fatalf("%s %s: %v", method, path, err)
		}
	}
}

// poll waits up to 20 s for cond: generous, for a loaded machine.
func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
