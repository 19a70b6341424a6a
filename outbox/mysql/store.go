// Package mysql is the outbox.Store and the outbox.Inbox for MariaDB (10.6
// or later) and MySQL (8.0 or later), on github.com/go-sql-driver/mysql.
//
// The names it builds fit both: table and index names and GET_LOCK names
// of at most 64 characters, and table names short enough as file names.
//
// Times are taken from the database clock (NOW(6)), so instances whose
// clocks disagree still agree on leases and schedules.
package mysql

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"unicode/utf8"

	"github.com/finalbus/final/outbox"
	"github.com/finalbus/final/outbox/internal/claim"
)

// Options tunes a Store (outbox.StoreOptions).
type Options = outbox.StoreOptions

// Store is an outbox table in MariaDB or MySQL.
type Store struct {
	db   *sql.DB
	t    table
	opts Options

	insertSQL string
	insert    *sql.Stmt         // prepared at Migrate, reused in every transaction
	returning bool              // the server is MariaDB, whose INSERT has RETURNING
	batch     map[int]*sql.Stmt // with returning: the multi-row inserts, by row count, prepared at Migrate

	counted atomic.Int64 // redeliveries counted, to prune old counts now and then
	own     claim.Own    // the rows this store's open held claims hold, which its claims pass over
}

var _ outbox.Store = (*Store)(nil)

// New returns the store in table name. It fails with outbox.ErrInvalidIdentifier
// when name is not a safe identifier or too long as a file name. Call
// Migrate before use.
func New(db *sql.DB, name string, opts Options) (*Store, error) {
	if db == nil {
		return nil, errors.New("outbox/mysql: nil *sql.DB")
	}
	t, err := newTable(name)
	if err != nil {
		return nil, err
	}
	opts = opts.WithDefaults()
	return &Store{db: db, t: t, opts: opts}, nil
}

// Table returns the table name.
func (s *Store) Table() string { return s.t.name }

// Close releases the prepared statements.
func (s *Store) Close() error {
	err := closeAll(s.batch)
	if s.insert != nil {
		return errors.Join(s.insert.Close(), err)
	}
	return err
}

func (s *Store) prepare(ctx context.Context) error {
	if s.insert != nil {
		return nil
	}
	s.insertSQL = `INSERT INTO ` + s.t.q +
		` (message, status, create_at, available_at, order_key) VALUES (?, 0, NOW(3), NOW(6) + INTERVAL ? MICROSECOND, ?)`
	stmt, err := s.db.PrepareContext(ctx, s.insertSQL)
	if err != nil {
		return fmt.Errorf("outbox/mysql: prepare insert: %w", err)
	}
	var version string
	if err := s.db.QueryRowContext(ctx, `SELECT VERSION()`).Scan(&version); err != nil {
		_ = stmt.Close()
		return fmt.Errorf("outbox/mysql: read the server version: %w", err)
	}
	if strings.Contains(version, "MariaDB") {
		if s.batch, err = s.prepareBatches(ctx); err != nil {
			_ = stmt.Close()
			return err
		}
		s.returning = true
	}
	s.insert = stmt
	return nil
}

// Insert implements outbox.Store. A *sql.Tx (outbox.SQLTx) reuses the
// statement prepared by Migrate; another Tx runs the plain statement and
// reads the id with LAST_INSERT_ID() on the same connection.
func (s *Store) Insert(ctx context.Context, tx outbox.Tx, row outbox.Row) (int64, error) {
	if s.insert == nil {
		return 0, errors.New("outbox/mysql: Insert before Migrate")
	}
	args := []any{row.Body, row.AvailableIn.Microseconds(), row.OrderKeyArg()}
	var (
		res sql.Result
		err error
	)
	switch stx := outbox.AsSQLTx(tx); {
	case tx == nil:
		res, err = s.insert.ExecContext(ctx, args...)
	case stx != nil:
		// The statement prepared on the store's *sql.DB is reused on the
		// transaction's connection. A transaction of another *sql.DB (an
		// ORM that opened its own pool) cannot use it: database/sql says so
		// with an unexported error, and the plain statement is used instead.
		res, err = stx.StmtContext(ctx, s.insert).ExecContext(ctx, args...)
		if err != nil && strings.Contains(err.Error(), "statement from different database") {
			res, err = stx.ExecContext(ctx, s.insertSQL, args...)
		}
	default:
		return s.insertOn(ctx, tx, args)
	}
	if err != nil {
		return 0, wrapError("insert", err)
	}
	return res.LastInsertId()
}

// insertOn inserts on a Tx that is not a *sql.Tx.
func (s *Store) insertOn(ctx context.Context, tx outbox.Tx, args []any) (int64, error) {
	if _, err := tx.Exec(ctx, s.insertSQL, args...); err != nil {
		return 0, wrapError("insert", err)
	}
	var id int64
	if err := tx.QueryRow(ctx, `SELECT LAST_INSERT_ID()`).Scan(&id); err != nil {
		return 0, wrapError("insert: read its id", err)
	}
	return id, nil
}

// Delete implements outbox.Store. It skips the rows another transaction
// holds (see skipHeld).
func (s *Store) Delete(ctx context.Context, ids []int64) error {
	return s.skipHeld(ctx, "delete", ids, "", nil, func(tx *sql.Tx, locked []int64) error {
		return s.delete(ctx, tx, locked)
	})
}

// execer runs statements: the *sql.DB, or a transaction.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// delete deletes the rows of ids, every one of them locked by ex's
// transaction (a held claim's rows, or those skipHeld locked). Ids that
// are consecutive, as a claim's from a backlog mostly are, go by a range
// of the primary key, which costs the server about a fifth less a row
// than the join of byIDs (bench/delcost -form range against -form json).
// No other row can be in that range, since its ids are all of ids, and
// its LIMIT ends the scan at the last of them: without it InnoDB reads
// and locks the row after the range too, and waits for it when another
// transaction holds it (a fresh insert, another claim's row).
func (s *Store) delete(ctx context.Context, ex execer, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	if first, ok := claim.Consecutive(ids); ok {
		if _, err := ex.ExecContext(ctx, `DELETE FROM `+s.t.q+` WHERE id BETWEEN ? AND ? LIMIT ?`,
			first, first+int64(len(ids))-1, len(ids)); err != nil {
			return wrapError("delete", err)
		}
		return nil
	}
	if _, err := ex.ExecContext(ctx, `DELETE o FROM `+byIDs(s.t.q), idJSON(ids)); err != nil {
		return wrapError("delete", err)
	}
	return nil
}

// skipHeld runs write on the rows of ids that no other transaction holds
// and that meet cond (" WHERE …" on args, or none), locked, in a READ COMMITTED
// transaction of its own. The acker's statements go by it so that they
// never wait for a held claim (see Store.ClaimHeld), which sends those rows
// and writes their outcome itself. A single statement cannot: InnoDB waits
// for the lock of a row an UPDATE or DELETE reads through a subquery, SKIP
// LOCKED or not.
func (s *Store) skipHeld(ctx context.Context, op string, ids []int64, cond string, args []any, write func(tx *sql.Tx, locked []int64) error) error {
	if len(ids) == 0 {
		return nil
	}
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		return wrapError(op, err)
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
	rows, err := tx.QueryContext(ctx, `SELECT id FROM `+byIDs(s.t.q)+cond+` FOR UPDATE SKIP LOCKED`,
		append([]any{idJSON(ids)}, args...)...)
	if err != nil {
		return wrapError(op, err)
	}
	locked, err := scanIDs(rows)
	if err != nil {
		return wrapError(op, err)
	}
	if len(locked) == 0 {
		return nil
	}
	if err := write(tx, locked); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return wrapError(op, err)
	}
	return nil
}

// scanIDs reads rows of one id column and closes them.
func scanIDs(rows *sql.Rows) ([]int64, error) {
	defer rows.Close()
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// Fail implements outbox.Store. It skips the rows another transaction
// holds (see skipHeld).
func (s *Store) Fail(ctx context.Context, owner string, ids []int64, cause string) error {
	var ownerArg any // NULL for rows nobody claimed
	if owner != "" {
		ownerArg = owner
	}
	return s.skipHeld(ctx, "fail", ids, ` WHERE claimed_by <=> ?`, []any{ownerArg}, func(tx *sql.Tx, locked []int64) error {
		return s.fail(ctx, tx, locked, cause)
	})
}

// fail records failed publishes of the rows of ids, which the caller's
// transaction holds: the backoff from the attempts so far, then the
// attempt counted, in two statements because a multi-table UPDATE (byIDs)
// may assign in any order.
func (s *Store) fail(ctx context.Context, ex execer, ids []int64, cause string) error {
	if len(ids) == 0 {
		return nil
	}
	list := idJSON(ids)
	if _, err := ex.ExecContext(ctx, `UPDATE `+byIDs(s.t.q)+` SET
		available_at = NOW(6) + INTERVAL FLOOR(LEAST(? * POW(2, LEAST(attempts, 30)), ?)) MICROSECOND,
		last_error = ?, claimed_by = NULL`, list, s.opts.RetryBase.Microseconds(), s.opts.RetryMax.Microseconds(), errorText(cause)); err != nil {
		return wrapError("fail", err)
	}
	if _, err := ex.ExecContext(ctx, `UPDATE `+byIDs(s.t.q)+` SET attempts = attempts + 1`, list); err != nil {
		return wrapError("fail", err)
	}
	return nil
}

// errorText is cause as last_error can hold it whatever the column's
// character set (latin1 on a table the ancestor library created, or on a
// server whose default it is): outbox.ErrorText's valid UTF-8 with every
// character outside ASCII written as \uXXXX, at most outbox.MaxErrorLen
// bytes, cut between characters. A strict server refuses a character its
// column cannot store (1366), and a held claim's failures would then take
// its deletes down with them.
func errorText(cause string) string {
	var b strings.Builder
	for _, r := range outbox.ErrorText(cause) {
		piece := string(r)
		if r >= utf8.RuneSelf {
			piece = fmt.Sprintf(`\u%04x`, r)
			if r > 0xFFFF {
				piece = fmt.Sprintf(`\U%08x`, r)
			}
		}
		if b.Len()+len(piece) > outbox.MaxErrorLen {
			break
		}
		b.WriteString(piece)
	}
	return b.String()
}

// Release implements outbox.Store. It skips the rows another transaction
// holds (see skipHeld).
func (s *Store) Release(ctx context.Context, owner string, ids []int64) error {
	if owner == "" {
		return nil
	}
	return s.skipHeld(ctx, "release", ids, ` WHERE claimed_by = ?`, []any{owner}, func(tx *sql.Tx, locked []int64) error {
		if _, err := tx.ExecContext(ctx, `UPDATE `+byIDs(s.t.q)+` SET available_at = NOW(6), claimed_by = NULL`, idJSON(locked)); err != nil {
			return wrapError("release", err)
		}
		return nil
	})
}

// Remaining implements outbox.Store.
func (s *Store) Remaining(ctx context.Context, ids []int64) ([]int64, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	in, args := inList(ids)
	rows, err := s.db.QueryContext(ctx, `SELECT id FROM `+s.t.q+` WHERE id IN `+in, args...)
	if err != nil {
		return nil, fmt.Errorf("outbox/mysql: remaining: %w", err)
	}
	left, err := scanIDs(rows)
	if err != nil {
		return nil, fmt.Errorf("outbox/mysql: remaining: %w", err)
	}
	return left, nil
}

// Purge implements outbox.Store.
func (s *Store) Purge(ctx context.Context) (int64, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM `+s.t.q)
	if err != nil {
		return 0, fmt.Errorf("outbox/mysql: purge: %w", err)
	}
	return res.RowsAffected()
}

// Len implements outbox.Store.
func (s *Store) Len(ctx context.Context) (int, error) {
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+s.t.q).Scan(&n); err != nil {
		return 0, fmt.Errorf("outbox/mysql: count: %w", err)
	}
	return n, nil
}

// inList returns "(?,?,…)" for ids and the ids as arguments.
func inList(ids []int64) (string, []any) {
	var b strings.Builder
	b.Grow(2 * len(ids))
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

func sortByID(recs []outbox.Record) {
	slices.SortFunc(recs, func(a, b outbox.Record) int { return cmp.Compare(a.ID, b.ID) })
}
