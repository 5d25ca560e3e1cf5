package postgres

import (
	"context"
	"embed"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/natter-chat/natter/schema"
)

// migrations holds the schema, one NNNN_description.sql per version.
//
//go:embed migrations/*.sql
var migrations embed.FS

// migrationLock is the advisory lock key that serialises migrations, an
// arbitrary constant of natter's. Advisory locks are per database, so
// nodes of other databases on the same server do not wait for each other.
const migrationLock int64 = 0x1d3c_7a5e_40b2_9c61

// migrate applies the embedded migrations schema_migrations does not list
// yet, each in its own transaction with its record, so a crash leaves all
// of a migration or none of it. One connection holds a session advisory
// lock throughout: nodes starting together apply each migration once, the
// others wait and then find nothing to do. It returns what it applied.
func migrate(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger) (applied []string, err error) {
	ms, err := schema.Migrations(migrations, "migrations")
	if err != nil {
		return nil, err
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", classify(err))
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, migrationLock); err != nil {
		return nil, fmt.Errorf("migrate: take lock: %w", classify(err))
	}
	defer func() {
		// A session lock outlives a failed unlock; closing the connection
		// is what releases it for sure (the pool then drops it).
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if _, uerr := conn.Exec(ctx, `SELECT pg_advisory_unlock($1)`, migrationLock); uerr != nil {
			conn.Conn().Close(ctx)
		}
	}()

	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    integer PRIMARY KEY,
		name       text NOT NULL,
		applied_at bigint NOT NULL)`); err != nil {
		return nil, fmt.Errorf("migrate: %w", classify(err))
	}
	var newest int
	if err := conn.QueryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&newest); err != nil {
		return nil, fmt.Errorf("migrate: %w", classify(err))
	}
	// An older binary must not run on a schema it does not know.
	if len(ms) > 0 && newest > ms[len(ms)-1].Version {
		return nil, fmt.Errorf("migrate: database schema version %d is newer than this binary's %d", newest, ms[len(ms)-1].Version)
	}
	for _, m := range ms {
		done, err := apply(ctx, conn.Conn(), m)
		if err != nil {
			return applied, fmt.Errorf("migrate %s: %w", m.Name, classify(err))
		}
		if done {
			applied = append(applied, m.Name)
			log.Info("applied migration", "version", m.Version, "name", m.Name)
		}
	}
	return applied, nil
}

// apply runs m unless it is recorded, and reports whether it ran.
func apply(ctx context.Context, conn *pgx.Conn, m schema.Migration) (bool, error) {
	ran := false
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		var done bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = $1)`, m.Version).Scan(&done); err != nil {
			return err
		}
		if done {
			return nil
		}
		// Exec without arguments uses the simple protocol, which runs a
		// script of several statements.
		if _, err := tx.Exec(ctx, m.SQL); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)`,
			m.Version, m.Name, time.Now().UnixMilli()); err != nil {
			return err
		}
		ran = true
		return nil
	})
	if err != nil {
		return false, err
	}
	return ran, nil
}
