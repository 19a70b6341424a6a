// Package sqlite is the outbox.Store and the outbox.Inbox for SQLite (3.35
// or later), on database/sql with modernc.org/sqlite (pure Go) or
// github.com/ncruces/go-sqlite3; it imports neither, so a program links
// only the driver it opens.
//
// # The database
//
// Open a database file (not ":memory:", whose every connection is a
// database of its own) with a busy timeout and in WAL mode, by adding
// DSNParams to the DSN:
//
//	sql.Open("sqlite", "file:app.db?"+sqlite.DSNParams)  // modernc.org/sqlite
//	sql.Open("sqlite3", "file:app.db?"+sqlite.DSNParams) // github.com/ncruces/go-sqlite3/driver
//
// The busy timeout makes a writer wait its turn for SQLite's one write
// lock instead of failing with SQLITE_BUSY; WAL lets readers go on while
// a writer writes. Both are per connection and set by the DSN on every
// connection of the pool; this package sets neither, and Migrate refuses
// a database without them (ErrSetup). With modernc.org/sqlite also add
// _txlock=immediate, so that your own transactions take the write lock at
// BEGIN: a DEFERRED transaction that reads and then writes fails with
// SQLITE_BUSY at once, without waiting, when another writer committed in
// between (github.com/ncruces/go-sqlite3 begins IMMEDIATE by default).
//
// # Concurrency
//
// SQLite lets one transaction write at a time, across every connection
// and process on the file. The relay's claim runs in a BEGIN IMMEDIATE
// transaction, which takes the write lock before it reads, so claims are
// serialised and need no SKIP LOCKED; a claim leases its rows (claimed_by,
// available_at) as the MySQL store does, so that several processes on one
// file never send a row at the same time. A business transaction that
// inserts into the outbox holds the write lock until it ends, and claims
// wait for it.
//
// Times are unix microseconds from the clock of the process that writes
// them: processes that share a database file share a host, and its clock.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"sync/atomic"
	"time"

	"github.com/finalbus/final/outbox"
)

// Options tunes a Store (outbox.StoreOptions).
type Options = outbox.StoreOptions

// Store is an outbox table in SQLite.
type Store struct {
	db   *sql.DB
	t    table
	opts Options

	insertSQL string
	counted   atomic.Int64 // redeliveries counted, to prune old counts now and then
}

var _ outbox.Store = (*Store)(nil)

// New returns the store in table name. It fails with
// outbox.ErrInvalidIdentifier when name is not a safe identifier. Call
// Migrate before use.
func New(db *sql.DB, name string, opts Options) (*Store, error) {
	if db == nil {
		return nil, errors.New("outbox/sqlite: nil *sql.DB")
	}
	t, err := newTable(name)
	if err != nil {
		return nil, err
	}
	opts = opts.WithDefaults()
	return &Store{
		db: db, t: t, opts: opts,
		insertSQL: `INSERT INTO ` + t.q + ` (message, create_at, available_at, order_key) VALUES (?, ?, ?, ?) RETURNING id`,
	}, nil
}

// Table returns the table name.
func (s *Store) Table() string { return s.t.name }

// Close releases nothing and returns nil: the Store holds no resource of
// its own. The *sql.DB is the caller's.
func (s *Store) Close() error { return nil }

// Insert implements outbox.Store. Inside tx, the row takes the write lock
// for tx if tx does not hold it yet, waiting up to the busy timeout.
func (s *Store) Insert(ctx context.Context, tx outbox.Tx, row outbox.Row) (int64, error) {
	now := time.Now().UnixMicro()
	args := []any{row.Body, now, now + row.AvailableIn.Microseconds(), row.OrderKeyArg()}
	var r outbox.RowScanner
	if tx == nil {
		r = s.db.QueryRowContext(ctx, s.insertSQL, args...)
	} else {
		r = tx.QueryRow(ctx, s.insertSQL, args...)
	}
	var id int64
	if err := r.Scan(&id); err != nil {
		return 0, wrapError("insert", err)
	}
	return id, nil
}

// Delete implements outbox.Store, in statements of at most maxBatch ids.
func (s *Store) Delete(ctx context.Context, ids []int64) error {
	for batch := range batches(ids) {
		in, args := inList(batch)
		if _, err := s.db.ExecContext(ctx, `DELETE FROM `+s.t.q+` WHERE id IN `+in, args...); err != nil {
			return wrapError("delete", err)
		}
	}
	return nil
}

// Fail implements outbox.Store. SQLite evaluates every assignment of an
// UPDATE on the row as it was, so available_at sees the old attempts.
func (s *Store) Fail(ctx context.Context, owner string, ids []int64, cause string) error {
	cause = outbox.ErrorText(cause)
	var ownerArg any // NULL for rows nobody claimed
	if owner != "" {
		ownerArg = owner
	}
	now := time.Now().UnixMicro()
	for batch := range batches(ids) {
		in, idArgs := inList(batch)
		args := append([]any{now, s.opts.RetryBase.Microseconds(), s.opts.RetryMax.Microseconds(), cause}, idArgs...)
		_, err := s.db.ExecContext(ctx, `UPDATE `+s.t.q+` SET
			available_at = ? + MIN(? * (1 << MIN(attempts, 30)), ?),
			attempts = attempts + 1, last_error = ?, claimed_by = NULL
			WHERE id IN `+in+` AND claimed_by IS ?`, append(args, ownerArg)...)
		if err != nil {
			return wrapError("fail", err)
		}
	}
	return nil
}

// Release implements outbox.Store.
func (s *Store) Release(ctx context.Context, owner string, ids []int64) error {
	if owner == "" {
		return nil
	}
	now := time.Now().UnixMicro()
	for batch := range batches(ids) {
		in, idArgs := inList(batch)
		args := append([]any{now}, idArgs...)
		_, err := s.db.ExecContext(ctx, `UPDATE `+s.t.q+` SET available_at = ?, claimed_by = NULL
			WHERE id IN `+in+` AND claimed_by = ?`, append(args, owner)...)
		if err != nil {
			return wrapError("release", err)
		}
	}
	return nil
}

// Remaining implements outbox.Store.
func (s *Store) Remaining(ctx context.Context, ids []int64) ([]int64, error) {
	var left []int64
	for batch := range batches(ids) {
		in, args := inList(batch)
		rows, err := s.db.QueryContext(ctx, `SELECT id FROM `+s.t.q+` WHERE id IN `+in, args...)
		if err != nil {
			return nil, wrapError("remaining", err)
		}
		for rows.Next() {
			var id int64
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return nil, wrapError("remaining", err)
			}
			left = append(left, id)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, wrapError("remaining", err)
		}
	}
	return left, nil
}

// Purge implements outbox.Store.
func (s *Store) Purge(ctx context.Context) (int64, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM `+s.t.q)
	if err != nil {
		return 0, wrapError("purge", err)
	}
	return res.RowsAffected()
}

// Len implements outbox.Store.
func (s *Store) Len(ctx context.Context) (int, error) {
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+s.t.q).Scan(&n); err != nil {
		return 0, wrapError("count", err)
	}
	return n, nil
}

// maxBatch bounds the ids of one statement, far below the 32766 host
// parameters SQLite allows (999 before 3.32).
const maxBatch = 500

// batches yields ids in slices of at most maxBatch.
func batches(ids []int64) func(yield func([]int64) bool) {
	return func(yield func([]int64) bool) {
		for len(ids) > 0 {
			n := min(len(ids), maxBatch)
			if !yield(ids[:n]) {
				return
			}
			ids = ids[n:]
		}
	}
}

// inList returns "(?,?,…)" for ids and the ids as arguments.
func inList(ids []int64) (string, []any) {
	var b strings.Builder
	b.Grow(2*len(ids) + 1)
	args := make([]any, len(ids))
	b.WriteByte('(')
	for i, id := range ids {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('?')
		args[i] = id
	}
	b.WriteByte(')')
	return b.String(), args
}
