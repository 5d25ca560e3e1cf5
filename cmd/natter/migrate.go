package main

import (
	"context"
	"fmt"
	"io"

	"github.com/natter-chat/natter/config"
	"github.com/natter-chat/natter/store/postgres"
	"github.com/natter-chat/natter/store/sqlite"
)

// migrate applies the store's pending migrations and exits, printing what
// it applied: for an operator who upgrades the schema before starting
// nodes. Nodes also migrate when they start (under an advisory lock on
// PostgreSQL), so running it is optional. It takes serve's settings
// (flags, NATTER_* variables, -config file) and uses --store,
// --postgres-url and --data.
func migrate(ctx context.Context, args []string, out io.Writer) error {
	cfg, fs, err := parseSettings("natter migrate", args)
	if err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("natter migrate takes no arguments, got %q", fs.Args())
	}
	log := newLogger("warn", cfg.LogFormat)
	switch cfg.Store {
	case config.StorePostgres:
		applied, err := postgres.Migrate(ctx, cfg.PostgresURL, log)
		for _, name := range applied {
			fmt.Fprintln(out, "applied", name)
		}
		if err != nil {
			return err
		}
		if len(applied) == 0 {
			fmt.Fprintln(out, "postgres: schema up to date, nothing to apply")
		}
		return nil
	case config.StoreSQLite:
		// The SQLite adapter migrates whenever it opens the file.
		db, err := sqlite.Open(ctx, sqlitePath(cfg), sqlite.Options{Fsync: cfg.Fsync, Logger: log})
		if err != nil {
			return err
		}
		fmt.Fprintln(out, "sqlite:", sqlitePath(cfg), "schema up to date")
		return db.Close()
	case config.StoreCassandraSQLite, config.StoreCassandraPostgres:
		// Both sides apply their pending migrations when they open.
		db, err := openStore(ctx, cfg, log)
		if err != nil {
			return err
		}
		fmt.Fprintln(out, cfg.Store+": schema up to date (Cassandra keyspace "+cfg.CassandraKeyspace+")")
		return db.Close()
	}
	return fmt.Errorf("unknown store %q", cfg.Store)
}
