// Package sqlite is natter's embedded store adapter, over the pure-Go
// modernc.org/sqlite driver (no cgo).
//
// The database runs in WAL mode. All writes go through one connection, so
// they queue in Go instead of contending for SQLite's write lock, while
// reads use a separate pool and never wait for a writer.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"runtime"
	"sync"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/natter-chat/natter/store"
)

// Options configures Open.
type Options struct {
	// Fsync is "interval" (the default: PRAGMA synchronous=NORMAL, a power
	// loss may lose the last commits but never corrupts) or "always"
	// (synchronous=FULL: every commit is on disk before it returns).
	Fsync string
	// Logger receives migration and lifecycle logs; nil discards them.
	Logger *slog.Logger
}

// DB is a store.Store over one SQLite database file.
type DB struct {
	w *sql.DB // the single writer connection
	r *sql.DB // the read pool

	// stmts caches prepared read statements by query text: the driver
	// would otherwise parse every query on every call, which costs more
	// than running the hot ones.
	stmts sync.Map // string -> *sql.Stmt

	// The persist consumer's statements, prepared once on the writer
	// connection (tx.StmtContext reuses them); preparing them per batch
	// cost about a fifth of the persist consumer's CPU.
	insertMessage, advanceConversation *sql.Stmt
}

const (
	sqlInsertMessage = `INSERT INTO messages
		(conversation_id, seq, id, sender_id, recipient_id, message_type, content, client_message_id, server_ts)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (conversation_id, seq) DO NOTHING`
	sqlAdvanceConversation = `UPDATE conversations
		SET last_seq = ?1, last_message_at = ?2, last_message_preview = ?3
		WHERE id = ?4 AND last_seq < ?1`
)

var _ store.Store = (*DB)(nil)

// busyTimeoutMS bounds how long a connection waits for a lock held by
// another process (or a WAL checkpoint) before failing with SQLITE_BUSY.
const busyTimeoutMS = 5000

// Open opens (creating if needed) the database at path and applies the
// pending migrations.
func Open(ctx context.Context, path string, opts Options) (*DB, error) {
	sync, err := synchronous(opts.Fsync)
	if err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// SQLite creates the -wal and -shm files with the database file's
	// mode, so creating that file 0600 first keeps all three private
	// whatever the umask.
	if f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600); err == nil {
		f.Close()
	}
	// IMMEDIATE transactions take the write lock at BEGIN, so a
	// transaction that reads before writing cannot fail to upgrade.
	// secure_delete zeroes what a write removes from a page (the content
	// of a message deleted for everyone) instead of leaving it in free
	// space; only the writer writes. The WAL is checkpointed every 10,000
	// pages (about 40 MB) rather than SQLite's 1,000: a checkpoint writes
	// each page once however often it changed since the last, and the
	// persistence consumer's batches touch the same index pages again and
	// again (BenchmarkSaveMessages, batches of 32 over 1,000
	// conversations: 10-20 % less CPU, a quarter less time a batch).
	w, err := sql.Open("sqlite", dsn(path, "journal_mode(WAL)", "synchronous("+sync+")", "secure_delete(1)",
		"wal_autocheckpoint(10000)")+"&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	if err := migrate(ctx, w, log); err != nil {
		w.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	// The readers open after the writer has switched the file to WAL.
	r, err := sql.Open("sqlite", dsn(path, "query_only(1)"))
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	n := max(4, runtime.GOMAXPROCS(0))
	r.SetMaxOpenConns(n)
	r.SetMaxIdleConns(n)
	if err := r.PingContext(ctx); err != nil {
		w.Close()
		r.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	db := &DB{w: w, r: r}
	if db.insertMessage, err = w.PrepareContext(ctx, sqlInsertMessage); err == nil {
		db.advanceConversation, err = w.PrepareContext(ctx, sqlAdvanceConversation)
	}
	if err != nil {
		w.Close()
		r.Close()
		return nil, fmt.Errorf("open %s: prepare writes: %w", path, err)
	}
	log.Info("sqlite store open", "path", path, "synchronous", sync)
	return db, nil
}

func synchronous(fsync string) (string, error) {
	switch fsync {
	case "", "interval":
		return "NORMAL", nil
	case "always":
		return "FULL", nil
	}
	return "", fmt.Errorf(`sqlite: unknown fsync mode %q (want "always" or "interval")`, fsync)
}

// dsn builds a file: URI (so that any path survives) whose pragmas run on
// every new connection.
func dsn(path string, pragmas ...string) string {
	q := url.Values{}
	for _, p := range append([]string{fmt.Sprintf("busy_timeout(%d)", busyTimeoutMS), "foreign_keys(1)"}, pragmas...) {
		q.Add("_pragma", p)
	}
	return "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + q.Encode()
}

// Close closes both pools.
func (db *DB) Close() error {
	db.stmts.Range(func(_, st any) bool {
		st.(*sql.Stmt).Close()
		return true
	})
	db.insertMessage.Close()
	db.advanceConversation.Close()
	return errors.Join(db.w.Close(), db.r.Close())
}

// write runs fn in a transaction on the writer connection. fn must use tx
// only: the writer has a single connection, so using db.w inside would
// wait forever.
func (db *DB) write(ctx context.Context, what string, fn func(tx *sql.Tx) error) error {
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("%s: %w", what, classify(err))
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return fmt.Errorf("%s: %w", what, classify(err))
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("%s: %w", what, classify(err))
	}
	return nil
}

// queryRow runs a read through a cached prepared statement.
func (db *DB) queryRow(ctx context.Context, query string, args ...any) *sql.Row {
	st, err := db.prepared(ctx, query)
	if err != nil {
		return db.r.QueryRowContext(ctx, query, args...) // reports the error
	}
	return st.QueryRowContext(ctx, args...)
}

// query runs a read through a cached prepared statement.
func (db *DB) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	st, err := db.prepared(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

func (db *DB) prepared(ctx context.Context, query string) (*sql.Stmt, error) {
	if st, ok := db.stmts.Load(query); ok {
		return st.(*sql.Stmt), nil
	}
	st, err := db.r.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	if prev, loaded := db.stmts.LoadOrStore(query, st); loaded {
		st.Close()
		return prev.(*sql.Stmt), nil
	}
	return st, nil
}

// exec runs one statement on the writer and returns the rows it matched.
func (db *DB) exec(ctx context.Context, what, query string, args ...any) (int64, error) {
	res, err := db.w.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", what, classify(err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("%s: %w", what, err)
	}
	return n, nil
}

// classify adds the store error a constraint violation stands for: a
// duplicate key is a conflict, a dangling reference (a conversation, user,
// device or message that does not exist) is not found.
func classify(err error) error {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return err
	}
	switch se.Code() {
	case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
		return fmt.Errorf("%w: %w", store.ErrConflict, err)
	case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
		return fmt.Errorf("%w: %w", store.ErrNotFound, err)
	}
	// Extended codes carry the primary code in their low byte.
	switch se.Code() & 0xff {
	case sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED,
		sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_NOMEM, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PROTOCOL:
		return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
	}
	return err
}

// notFound maps sql.ErrNoRows to store.ErrNotFound.
func notFound(what string, err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%s: %w", what, store.ErrNotFound)
	}
	return fmt.Errorf("%s: %w", what, err)
}
