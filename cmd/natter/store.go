package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/natter-chat/natter/config"
	"github.com/natter-chat/natter/store"
	"github.com/natter-chat/natter/store/postgres"
	"github.com/natter-chat/natter/store/sqlite"
)

// openStore opens the store cfg.Store names, with its pending migrations
// applied. The caller closes it. This is the one place that picks an
// adapter.
func openStore(ctx context.Context, cfg config.Server, log *slog.Logger) (store.Store, error) {
	// Each case returns its own nil on error: a nil *DB in a store.Store
	// would not compare equal to nil.
	switch cfg.Store {
	case config.StoreSQLite:
		db, err := sqlite.Open(ctx, sqlitePath(cfg), sqlite.Options{Fsync: cfg.Fsync, Logger: log})
		if err != nil {
			return nil, err
		}
		return db, nil
	case config.StorePostgres:
		// PostgreSQL's durability is the server's own (synchronous_commit);
		// --fsync governs JetStream and SQLite only.
		db, err := postgres.Open(ctx, cfg.PostgresURL, postgres.Options{Logger: log})
		if err != nil {
			return nil, err
		}
		return db, nil
	case config.StoreCassandraSQLite:
		users, err := sqlite.Open(ctx, sqlitePath(cfg), sqlite.Options{Fsync: cfg.Fsync, Logger: log})
		if err != nil {
			return nil, err
		}
		return withCassandra(ctx, cfg, users, log)
	case config.StoreCassandraPostgres:
		users, err := postgres.Open(ctx, cfg.PostgresURL, postgres.Options{Logger: log})
		if err != nil {
			return nil, err
		}
		return withCassandra(ctx, cfg, users, log)
	}
	return nil, fmt.Errorf("unknown store %q", cfg.Store)
}

func sqlitePath(cfg config.Server) string { return filepath.Join(cfg.DataDir, "natter.db") }
