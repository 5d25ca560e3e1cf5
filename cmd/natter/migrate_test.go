package main

import (
	"context"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// natter migrate against a real PostgreSQL (NATTER_TEST_POSTGRES_URL, as
// store/postgres's tests): the first run applies and names every
// migration, the second finds nothing to do.
func TestMigratePostgres(t *testing.T) {
	admin := os.Getenv("NATTER_TEST_POSTGRES_URL")
	if admin == "" {
		t.Skip("NATTER_TEST_POSTGRES_URL not set (scripts/postgres start DIR PORT prints one)")
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	const name = "natter_test_migrate_cmd"
	if _, err := conn.Exec(ctx, `DROP DATABASE IF EXISTS `+name+` WITH (FORCE)`); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `CREATE DATABASE `+name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // owns conn: a defer would close it before cleanups run
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, `DROP DATABASE IF EXISTS `+name+` WITH (FORCE)`); err != nil {
			t.Errorf("drop %s: %v", name, err)
		}
	})
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name

	var out strings.Builder
	if err := migrate(ctx, []string{"--store", "postgres", "--postgres-url", u.String()}, &out); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); !strings.Contains(got, "applied 0001_init.sql\n") {
		t.Fatalf("first run printed %q, want the applied migrations", got)
	}
	out.Reset()
	t.Setenv("NATTER_POSTGRES_URL", u.String())
	if err := migrate(ctx, []string{"--store", "postgres"}, &out); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); strings.Contains(got, "applied") || !strings.Contains(got, "nothing to apply") {
		t.Fatalf("second run printed %q, want nothing applied", got)
	}
	t.Setenv("NATTER_POSTGRES_URL", "")
	if err := migrate(ctx, []string{"--store", "postgres"}, &out); err == nil || !strings.Contains(err.Error(), "--postgres-url") {
		t.Fatalf("without a URL: %v, want an error naming --postgres-url", err)
	}
}
