// Package postgres is natter's PostgreSQL store adapter, over
// github.com/jackc/pgx/v5 and its pool: for deployments that outgrow one
// SQLite file or run several nodes against one database.
//
// The schema is relational (migrations/, applied by Migrate under an
// advisory lock) and every multi-row change is one transaction at READ
// COMMITTED. Writers that touch several rows lock them in key order
// (messages by (conversation_id, seq), conversations by id), so two nodes
// saving overlapping batches queue instead of deadlocking.
//
// Groups fit next to this without reshaping it: a groups table (id, name,
// created_at, member_count with CHECK (member_count <= 500)) keyed by the
// conversation's group_id, and group_members (group_id, user_id, role,
// joined_seq, joined_at). Adding a member is one transaction that runs
// UPDATE groups SET member_count = member_count + 1 WHERE id = $1 AND
// member_count < 500 (its row lock serialises two admins racing for the
// last seat: one gets no row, which is group_full) and inserts the
// member and its participants row. Per-member receipts are the
// participants rows they already are; the aggregate "everyone has it"
// becomes a per-group low-water mark kept in the groups row, advanced in
// the receipt's transaction, instead of a scan over 500 rows.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/natter-chat/natter/store"
)

// Options configures Open.
type Options struct {
	// MaxConns caps the pool; 0 keeps pgxpool's default (the larger of 4
	// and the number of CPUs).
	MaxConns int32
	// Logger receives migration and lifecycle logs; nil discards them.
	Logger *slog.Logger
}

// DB is a store.Store over a PostgreSQL database.
type DB struct {
	pool *pgxpool.Pool
}

var _ store.Store = (*DB)(nil)

// Open connects to the database at connURL (a postgres:// URL or a
// key=value DSN) and applies the pending migrations. Errors never quote
// the URL's password.
func Open(ctx context.Context, connURL string, opts Options) (*DB, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	pool, err := connect(ctx, connURL, opts.MaxConns)
	if err != nil {
		return nil, err
	}
	cc := pool.Config().ConnConfig
	if _, err := migrate(ctx, pool, log); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open postgres %s: %w", where(cc), err)
	}
	log.Info("postgres store open", "host", cc.Host, "port", cc.Port, "database", cc.Database, "user", cc.User,
		"max_conns", pool.Config().MaxConns)
	return &DB{pool: pool}, nil
}

// Migrate applies the pending migrations to the database at connURL and
// returns the names of those it applied, oldest first. Nodes call it
// through Open; `natter migrate` calls it alone.
func Migrate(ctx context.Context, connURL string, log *slog.Logger) ([]string, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	pool, err := connect(ctx, connURL, 2)
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	applied, err := migrate(ctx, pool, log)
	if err != nil {
		return applied, fmt.Errorf("migrate postgres %s: %w", where(pool.Config().ConnConfig), err)
	}
	return applied, nil
}

func connect(ctx context.Context, connURL string, maxConns int32) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(connURL)
	if err != nil {
		return nil, fmt.Errorf("postgres url: %s", redact(err.Error(), connURL))
	}
	if maxConns > 0 {
		cfg.MaxConns = maxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to postgres %s: %w", where(cfg.ConnConfig), classify(err))
	}
	// NewWithConfig connects lazily; fail now, not at the first request.
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to postgres %s: %w", where(cfg.ConnConfig), classify(err))
	}
	return pool, nil
}

// where names a database for errors and logs, without credentials.
func where(cc *pgx.ConnConfig) string {
	return fmt.Sprintf("%s:%d/%s", cc.Host, cc.Port, cc.Database)
}

// redact removes connURL's password from msg. pgx redacts parse errors on
// a best-effort basis; this covers what it misses in a URL net/url can
// read, and hides msg entirely when even that cannot find the password.
func redact(msg, connURL string) string {
	u, err := url.Parse(connURL)
	if err != nil || u.Scheme == "" {
		if strings.Contains(connURL, "password") || strings.Contains(connURL, "@") {
			return "cannot be parsed (not shown: it may hold a password)"
		}
		return msg
	}
	if pw, ok := u.User.Password(); ok && pw != "" {
		msg = strings.ReplaceAll(msg, pw, "xxxxx")
		msg = strings.ReplaceAll(msg, url.PathEscape(pw), "xxxxx")
		msg = strings.ReplaceAll(msg, url.QueryEscape(pw), "xxxxx")
	}
	if pw := u.Query().Get("password"); pw != "" {
		msg = strings.ReplaceAll(msg, pw, "xxxxx")
	}
	return msg
}

// Close closes the pool, waiting for connections in use to be released.
func (db *DB) Close() error {
	db.pool.Close()
	return nil
}

// tx runs fn in a transaction: committed when fn returns nil, rolled back
// otherwise. Errors are classified and prefixed with what.
func (db *DB) tx(ctx context.Context, what string, fn func(tx pgx.Tx) error) error {
	err := pgx.BeginFunc(ctx, db.pool, fn)
	if err != nil {
		return fmt.Errorf("%s: %w", what, classify(err))
	}
	return nil
}

// exec runs one statement and returns the rows it matched.
func (db *DB) exec(ctx context.Context, what, query string, args ...any) (int64, error) {
	tag, err := db.pool.Exec(ctx, query, args...)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", what, classify(err))
	}
	return tag.RowsAffected(), nil
}

// SQLSTATE codes classify tells apart (PostgreSQL's appendix A).
const (
	codeUniqueViolation      = "23505"
	codeForeignKeyViolation  = "23503"
	codeCharNotInRepertoire  = "22021"
	codeSerializationFailure = "40001"
	codeDeadlockDetected     = "40P01"
	codeLockNotAvailable     = "55P03"
	codeReadOnlyTransaction  = "25006"
	codeIOError              = "58030"
)

// classify adds the store error a driver error stands for, once, here:
//   - a duplicate key is store.ErrConflict;
//   - a dangling reference (a conversation, user, device or message that
//     does not exist) is store.ErrNotFound, and so is a key holding U+0000,
//     which text columns cannot store, so nothing stored can match it;
//   - whatever a later retry may cure is store.ErrUnavailable: the
//     connection refused or lost (class 08, network errors), too many
//     connections, disk or memory full (class 53), the server shutting
//     down or starting (class 57P), serialization failures and deadlocks
//     (class 40), a lock timeout, a read-only standby after a failover,
//     an I/O error. Consumers wait those out instead of dead-lettering.
//
// pgx.ErrNoRows is left to the caller, who knows what was not found.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case pe.Code == codeUniqueViolation:
			return fmt.Errorf("%w: %w", store.ErrConflict, err)
		case pe.Code == codeForeignKeyViolation, pe.Code == codeCharNotInRepertoire:
			return fmt.Errorf("%w: %w", store.ErrNotFound, err)
		case strings.HasPrefix(pe.Code, "08"), strings.HasPrefix(pe.Code, "53"), strings.HasPrefix(pe.Code, "57P"),
			pe.Code == codeSerializationFailure, pe.Code == codeDeadlockDetected, pe.Code == codeLockNotAvailable,
			pe.Code == codeReadOnlyTransaction, pe.Code == codeIOError:
			return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
		}
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err // the caller gave up; nothing is wrong with the store
	}
	var (
		ce     *pgconn.ConnectError
		netErr net.Error
	)
	if errors.As(err, &ce) || errors.As(err, &netErr) || pgconn.SafeToRetry(err) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
	}
	return err
}

func isNotFound(err error) bool { return errors.Is(err, store.ErrNotFound) }

// notFound maps pgx.ErrNoRows to store.ErrNotFound and classifies the rest.
func notFound(what string, err error) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%s: %w", what, store.ErrNotFound)
	}
	return fmt.Errorf("%s: %w", what, classify(err))
}
