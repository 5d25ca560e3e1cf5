package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"time"

	"github.com/natter-chat/natter/store/migration"
	"github.com/natter-chat/natter/store/sqlite/migrations"
)

// migrate applies the embedded migrations that schema_migrations does not
// list yet, each in its own transaction with its record, so a crash leaves
// either all of a migration or none of it.
func migrate(ctx context.Context, w *sql.DB, log *slog.Logger) error {
	ms, err := migration.Read(migrations.SQLite, ".")
	if err != nil {
		return err
	}
	if _, err := w.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER PRIMARY KEY,
		name       TEXT NOT NULL,
		applied_at INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	var newest int
	if err := w.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&newest); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	// An older binary must not run on a schema it does not know.
	if len(ms) > 0 && newest > ms[len(ms)-1].Version {
		return fmt.Errorf("migrate: database schema version %d is newer than this binary's %d", newest, ms[len(ms)-1].Version)
	}
	for _, m := range ms {
		if err := apply(ctx, w, m, log); err != nil {
			return fmt.Errorf("migrate %s: %w", m.Name, err)
		}
	}
	return nil
}

func apply(ctx context.Context, w *sql.DB, m migration.Migration, log *slog.Logger) error {
	tx, err := w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	// Checked inside the (immediate) transaction: another process opening
	// the same file may have applied it meanwhile.
	var done bool
	if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = ?)`, m.Version).Scan(&done); err != nil {
		return err
	}
	if done {
		return nil
	}
	if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
		m.Version, m.Name, time.Now().UnixMilli()); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	log.Info("applied migration", "version", m.Version, "name", m.Name)
	return nil
}
