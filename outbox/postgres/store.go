// Package postgres is the outbox.Store and the outbox.Inbox for
// PostgreSQL (13 or later), on database/sql with
// github.com/jackc/pgx/v5/stdlib. It imports no driver: lib/pq works too.
//
// Names are at most 63 bytes, PostgreSQL's limit, and always quoted, so
// a table name keeps its case and may hold '.' and '-'.
//
// Times are taken from the database clock, so instances whose clocks
// disagree still agree on leases and schedules. They are the time of the
// statement (clock_timestamp), not that of its transaction (now), which
// is how long ago the caller's transaction began.
//
// Nothing this package runs inside a caller's transaction fails in
// normal operation: in PostgreSQL a failed statement aborts the whole
// transaction, so the inbox recognises a duplicate with ON CONFLICT DO
// NOTHING rather than by a caught unique violation.
package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"

	"github.com/finalbus/final/outbox"
	"github.com/finalbus/final/outbox/internal/claim"
)

// Options tunes a Store (outbox.StoreOptions).
type Options = outbox.StoreOptions

// Store is an outbox table in PostgreSQL.
type Store struct {
	db   *sql.DB
	t    table
	opts Options

	insertSQL string

	counted atomic.Int64 // redeliveries counted, to prune old counts now and then
	own     claim.Own    // the rows this store's open held claims hold, which its claims pass over
}

var _ outbox.Store = (*Store)(nil)

// New returns the store in table name. It fails with
// outbox.ErrInvalidIdentifier when name is not a safe identifier or
// longer than 63 bytes. Call Migrate before use.
func New(db *sql.DB, name string, opts Options) (*Store, error) {
	if db == nil {
		return nil, errors.New("outbox/postgres: nil *sql.DB")
	}
	t, err := newTable(name)
	if err != nil {
		return nil, err
	}
	opts = opts.WithDefaults()
	return &Store{
		db: db, t: t, opts: opts,
		insertSQL: `INSERT INTO ` + t.q + ` (message, available_at, order_key)
			VALUES ($1, clock_timestamp() + ` + micros("$2") + `, $3) RETURNING id`,
	}, nil
}

// Table returns the table name.
func (s *Store) Table() string { return s.t.name }

// Close releases nothing: the driver keeps the prepared statements of
// each connection (pgx caches them), so the store holds none. It is there
// for the symmetry with outbox/mysql.
func (s *Store) Close() error { return nil }

// now is the statement's time, evaluated once per statement: a scalar
// subquery is computed before the scan, so it can bound an index range,
// where clock_timestamp() itself, volatile, would be a filter evaluated on
// every row.
const now = `(SELECT clock_timestamp())`

// micros is a parameter of microseconds as an interval.
func micros(param string) string { return `(` + param + `::bigint * interval '1 microsecond')` }

// Insert implements outbox.Store. It returns the id of the row through
// RETURNING, inside tx when tx is not nil.
func (s *Store) Insert(ctx context.Context, tx outbox.Tx, row outbox.Row) (int64, error) {
	args := []any{row.Body, row.AvailableIn.Microseconds(), row.OrderKeyArg()}
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

// Delete implements outbox.Store, in one statement for all of ids. It
// skips the rows another transaction holds (see unlocked); a held claim
// deletes its own rows by deleteHeld.
func (s *Store) Delete(ctx context.Context, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	if _, err := s.db.ExecContext(ctx, `DELETE FROM `+s.t.q+` WHERE id IN (`+s.unlocked(1, "")+`)`, idArray(ids)); err != nil {
		return wrapError("delete", err)
	}
	return nil
}

// execer runs statements: the *sql.DB, or a held claim's *sql.Tx.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// unlocked is a subquery of the rows of the ids in parameter n that no
// other transaction holds, locked: the acker's statements go by it so that
// they never wait for a held claim (see Store.ClaimHeld), which sends those
// rows and writes their outcome itself. cond is more conditions (" AND
// …") on the rows.
func (s *Store) unlocked(n int, cond string) string {
	return `SELECT id FROM ` + s.t.q + ` WHERE id = ANY($` + strconv.Itoa(n) + `::bigint[])` + cond + ` FOR UPDATE SKIP LOCKED`
}

// deleteHeld deletes the rows of ids, every one of them locked by tx (a
// held claim's), so it needs no subquery skipping the rows others hold.
// Consecutive ids, as a claim's from a backlog mostly are, go by a range
// of the primary key: no other row can be in it.
func (s *Store) deleteHeld(ctx context.Context, tx *sql.Tx, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	var err error
	if first, ok := claim.Consecutive(ids); ok {
		_, err = tx.ExecContext(ctx, `DELETE FROM `+s.t.q+` WHERE id BETWEEN $1 AND $2`, first, first+int64(len(ids))-1)
	} else {
		_, err = tx.ExecContext(ctx, `DELETE FROM `+s.t.q+` WHERE id = ANY($1::bigint[])`, idArray(ids))
	}
	if err != nil {
		return wrapError("delete", err)
	}
	return nil
}

// Fail implements outbox.Store.
func (s *Store) Fail(ctx context.Context, owner string, ids []int64, cause string) error {
	var ownerArg any // NULL for rows nobody claimed
	if owner != "" {
		ownerArg = owner
	}
	return s.fail(ctx, s.db, ids, cause, ` AND claimed_by IS NOT DISTINCT FROM $5::text`, ownerArg)
}

// fail records failed publishes of the rows of ids that also meet cond
// (an AND clause on $5 onwards, args; empty for a held claim's rows, which
// are its own whoever leased them last). PostgreSQL evaluates every
// assignment of an UPDATE on the row as it was, so the backoff uses the
// attempts before this one.
func (s *Store) fail(ctx context.Context, ex execer, ids []int64, cause, cond string, args ...any) error {
	if len(ids) == 0 {
		return nil
	}
	all := []any{s.opts.RetryBase.Microseconds(), s.opts.RetryMax.Microseconds(), outbox.ErrorText(cause), idArray(ids)}
	_, err := ex.ExecContext(ctx, `UPDATE `+s.t.q+` SET
		available_at = `+now+` + floor(least($1::float8 * power(2, least(attempts, 30)), $2::float8)) * interval '1 microsecond',
		attempts = attempts + 1, last_error = $3, claimed_by = NULL
		WHERE id IN (`+s.unlocked(4, cond)+`)`, append(all, args...)...)
	if err != nil {
		return wrapError("fail", err)
	}
	return nil
}

// Release implements outbox.Store.
func (s *Store) Release(ctx context.Context, owner string, ids []int64) error {
	if owner == "" || len(ids) == 0 {
		return nil
	}
	_, err := s.db.ExecContext(ctx, `UPDATE `+s.t.q+` SET available_at = `+now+`, claimed_by = NULL
		WHERE id IN (`+s.unlocked(1, ` AND claimed_by = $2`)+`)`, idArray(ids), owner)
	if err != nil {
		return wrapError("release", err)
	}
	return nil
}

// Remaining implements outbox.Store.
func (s *Store) Remaining(ctx context.Context, ids []int64) ([]int64, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	rows, err := s.db.QueryContext(ctx, `SELECT id FROM `+s.t.q+` WHERE id = ANY($1::bigint[]) ORDER BY id`, idArray(ids))
	if err != nil {
		return nil, fmt.Errorf("outbox/postgres: remaining: %w", err)
	}
	defer rows.Close()
	var left []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("outbox/postgres: remaining: %w", err)
		}
		left = append(left, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("outbox/postgres: remaining: %w", err)
	}
	return left, nil
}

// Purge implements outbox.Store.
func (s *Store) Purge(ctx context.Context) (int64, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM `+s.t.q)
	if err != nil {
		return 0, fmt.Errorf("outbox/postgres: purge: %w", err)
	}
	return res.RowsAffected()
}

// Len implements outbox.Store.
func (s *Store) Len(ctx context.Context) (int, error) {
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+s.t.q).Scan(&n); err != nil {
		return 0, fmt.Errorf("outbox/postgres: count: %w", err)
	}
	return n, nil
}

// idArray returns ids as the text of a bigint[] ("{1,2,3}"), for a
// $n::bigint[] parameter: one parameter for any number of ids, a
// statement whose text does not change with their number (pgx prepares
// it once per connection), and no driver-specific array type.
func idArray(ids []int64) string {
	b := make([]byte, 0, 2+8*len(ids))
	b = append(b, '{')
	for i, id := range ids {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, id, 10)
	}
	return string(append(b, '}'))
}
