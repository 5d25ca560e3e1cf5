package testnode

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"

	"github.com/jackc/pgx/v5"
)

// PostgresEnv names the PostgreSQL superuser URL that puts the store of
// every node Start starts in a database of its own (see the package doc).
const PostgresEnv = "NATTER_TEST_POSTGRES_URL"

// postgresFlags are the `natter serve` flags that keep a node's store in
// the database at dbURL: the one place to change if the adapter's flags
// change.
func postgresFlags(dbURL string) []string {
	return []string{"--store", "postgres", "--postgres-url", dbURL}
}

// database is one node's PostgreSQL database.
type database struct {
	admin string // the superuser URL it was created through
	name  string
	url   string // admin with the path naming this database
}

// createDatabase creates a database named natter_t_<random> through the
// superuser URL admin and returns it with its URL.
func createDatabase(ctx context.Context, admin string) (*database, error) {
	u, err := url.Parse(admin)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return nil, fmt.Errorf("%s is not a postgres:// URL: %q", PostgresEnv, admin)
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	d := &database{admin: admin, name: "natter_t_" + hex.EncodeToString(b[:])}
	u.Path = "/" + d.name
	d.url = u.String()
	if err := d.exec(ctx, "CREATE DATABASE "+pgx.Identifier{d.name}.Sanitize()); err != nil {
		return nil, fmt.Errorf("create database %s: %w", d.name, err)
	}
	return d, nil
}

// drop drops the database, closing what is still connected to it (a
// node killed with SIGKILL leaves its sessions behind for a moment).
func (d *database) drop(ctx context.Context) error {
	if err := d.exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{d.name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database %s: %w", d.name, err)
	}
	return nil
}

// exec runs one statement on its own connection to the admin database
// (CREATE and DROP DATABASE cannot run inside a transaction).
func (d *database) exec(ctx context.Context, sql string) error {
	conn, err := pgx.Connect(ctx, d.admin)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}
