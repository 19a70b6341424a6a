// Package mysql is the outbox.Store for MariaDB (10.6 or later) and MySQL
// (8.0 or later), on github.com/go-sql-driver/mysql.
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
	"time"

	gomysql "github.com/go-sql-driver/mysql"

	"github.com/finalbus/final/message"
	"github.com/finalbus/final/outbox"
)

// Options tunes a Store.
type Options struct {
	// RetryBase is the backoff after a row's first failed publish; it
	// doubles with each further failure. Default 100ms.
	RetryBase time.Duration
	// RetryMax caps the backoff. Default 5s.
	RetryMax time.Duration
}

// Store is an outbox table in MariaDB or MySQL.
type Store struct {
	db    *sql.DB
	table string // validated, unquoted
	q     string // quoted
	opts  Options

	insertSQL string
	insert    *sql.Stmt // prepared at Migrate, reused in every transaction
}

var _ outbox.Store = (*Store)(nil)

// New returns the store for table. It fails with outbox.ErrInvalidIdentifier
// when table is not a safe identifier. Call Migrate before use.
func New(db *sql.DB, table string, opts Options) (*Store, error) {
	if db == nil {
		return nil, errors.New("outbox/mysql: nil *sql.DB")
	}
	q, err := outbox.QuoteIdentifier(table)
	if err != nil {
		return nil, err
	}
	if opts.RetryBase <= 0 {
		opts.RetryBase = 100 * time.Millisecond
	}
	if opts.RetryMax <= 0 {
		opts.RetryMax = 5 * time.Second
	}
	return &Store{db: db, table: table, q: q, opts: opts}, nil
}

// Table returns the table name.
func (s *Store) Table() string { return s.table }

// Close releases the prepared statement.
func (s *Store) Close() error {
	if s.insert != nil {
		return s.insert.Close()
	}
	return nil
}

func (s *Store) prepare(ctx context.Context) error {
	if s.insert != nil {
		return nil
	}
	s.insertSQL = `INSERT INTO ` + s.q +
		` (message, status, create_at, available_at, order_key) VALUES (?, 0, NOW(3), NOW(6) + INTERVAL ? MICROSECOND, ?)`
	stmt, err := s.db.PrepareContext(ctx, s.insertSQL)
	if err != nil {
		return fmt.Errorf("outbox/mysql: prepare insert: %w", err)
	}
	s.insert = stmt
	return nil
}

// Insert implements outbox.Store.
func (s *Store) Insert(ctx context.Context, tx *sql.Tx, row outbox.Row) (int64, error) {
	if s.insert == nil {
		return 0, errors.New("outbox/mysql: Insert before Migrate")
	}
	var key any // NULL: not ordered
	if row.OrderKey != 0 {
		key = row.OrderKey
	}
	args := []any{row.Body, row.AvailableIn.Microseconds(), key}
	var (
		res sql.Result
		err error
	)
	if tx == nil {
		res, err = s.insert.ExecContext(ctx, args...)
	} else {
		// The statement prepared on the store's *sql.DB is reused on the
		// transaction's connection. A transaction of another *sql.DB (an
		// ORM that opened its own pool) cannot use it: database/sql says so
		// with an unexported error, and the plain statement is used instead.
		res, err = tx.StmtContext(ctx, s.insert).ExecContext(ctx, args...)
		if err != nil && strings.Contains(err.Error(), "statement from different database") {
			res, err = tx.ExecContext(ctx, s.insertSQL, args...)
		}
	}
	if err != nil {
		return 0, fmt.Errorf("outbox/mysql: insert: %w", err)
	}
	return res.LastInsertId()
}

// Claim implements outbox.Store. It runs in READ COMMITTED so that the
// scan takes no gap locks that would stall business transactions inserting
// rows, and uses SKIP LOCKED so that concurrent claimers split the rows.
//
// Concurrent claimers can still deadlock: the lease rewrites the indexed
// available_at while another claimer walks that index. InnoDB then rolls
// one claim back whole, so it is simply tried again.
func (s *Store) Claim(ctx context.Context, owner string, limit int, lease time.Duration) ([]outbox.Record, error) {
	for attempt := 1; ; attempt++ {
		recs, err := s.claim(ctx, owner, limit, lease)
		if err == nil || attempt == maxClaimAttempts || !retryable(err) {
			return recs, err
		}
	}
}

const maxClaimAttempts = 5

// retryable reports InnoDB's deadlock and lock wait timeout errors.
func retryable(err error) bool {
	var me *gomysql.MySQLError
	return errors.As(err, &me) && (me.Number == 1213 || me.Number == 1205)
}

func (s *Store) claim(ctx context.Context, owner string, limit int, lease time.Duration) ([]outbox.Record, error) {
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		return nil, fmt.Errorf("outbox/mysql: claim: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op

	var (
		recs    []outbox.Record
		claimed = map[int64][]int64{} // ids claimed so far, by order key
		held    []int64               // order keys held back by an earlier row
	)
	// Rows held back stay at the head of the scan; the next pass looks
	// past their keys, so that a key stuck behind a failing row does not
	// stall the others.
	for pass := 0; pass < maxClaimPasses && len(recs) < limit; pass++ {
		cands, err := s.candidates(ctx, tx, limit-len(recs), held)
		if err != nil || len(cands) == 0 {
			if err != nil {
				return nil, err
			}
			break
		}
		ok, blocked, err := s.inOrder(ctx, tx, cands, claimed)
		if err != nil {
			return nil, err
		}
		if len(ok) > 0 {
			if err := s.lease(ctx, tx, owner, ok, lease); err != nil {
				return nil, err
			}
			for _, c := range ok {
				if c.key != 0 {
					claimed[c.key] = append(claimed[c.key], c.rec.ID)
				}
				recs = append(recs, c.rec)
			}
		}
		if len(blocked) == 0 {
			break // the scan reached no held-back row: it is complete
		}
		held = append(held, blocked...)
	}
	if len(recs) == 0 {
		return nil, nil
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("outbox/mysql: claim commit: %w", err)
	}
	sortByID(recs)
	return recs, nil
}

// maxClaimPasses bounds the scans of one claim that look past held-back
// keys.
const maxClaimPasses = 4

// candidate is an available row locked by the claim.
type candidate struct {
	rec outbox.Record
	key int64 // 0: not ordered
}

// candidates locks up to limit available rows whose order key is not in
// skip, first available first.
func (s *Store) candidates(ctx context.Context, tx *sql.Tx, limit int, skip []int64) ([]candidate, error) {
	query := `SELECT id, message, attempts, order_key FROM ` + s.q + ` WHERE available_at <= NOW(6)`
	var args []any
	if len(skip) > 0 {
		in, keyArgs := inList(skip)
		query += ` AND (order_key IS NULL OR order_key NOT IN ` + in + `)`
		args = keyArgs
	}
	query += ` ORDER BY available_at, id LIMIT ? FOR UPDATE SKIP LOCKED`
	rows, err := tx.QueryContext(ctx, query, append(args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("outbox/mysql: claim: %w", err)
	}
	defer rows.Close()
	var cands []candidate
	for rows.Next() {
		var (
			c    candidate
			body []byte
			key  sql.NullInt64
		)
		if err := rows.Scan(&c.rec.ID, &body, &c.rec.Attempts, &key); err != nil {
			return nil, fmt.Errorf("outbox/mysql: claim scan: %w", err)
		}
		c.rec.Body = body
		c.rec.Message, c.rec.Err = message.Unmarshal(body)
		c.key = key.Int64
		c.rec.OrderKey = key.Int64
		cands = append(cands, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("outbox/mysql: claim: %w", err)
	}
	return cands, nil
}

// inOrder splits cands into the rows that may be claimed and the order keys
// held back: an ordered row is claimable only when no row of its key with
// a lower id is left in the table outside cands and claimed. For each key,
// one index probe finds its lowest such row.
func (s *Store) inOrder(ctx context.Context, tx *sql.Tx, cands []candidate, claimed map[int64][]int64) (ok []candidate, blocked []int64, err error) {
	byKey := map[int64][]int64{}
	var keys []int64
	for _, c := range cands {
		if c.key == 0 {
			continue
		}
		if _, seen := byKey[c.key]; !seen {
			keys = append(keys, c.key)
		}
		byKey[c.key] = append(byKey[c.key], c.rec.ID)
	}
	if len(keys) == 0 {
		return cands, nil, nil
	}
	var (
		b    strings.Builder
		args []any
	)
	for i, k := range keys {
		in, idArgs := inList(slices.Concat(byKey[k], claimed[k]))
		if i > 0 {
			b.WriteString(" UNION ALL ")
		}
		b.WriteString(`(SELECT order_key, id FROM ` + s.q + ` WHERE order_key = ? AND id < ? AND id NOT IN ` + in + ` ORDER BY id LIMIT 1)`)
		args = append(args, k, slices.Max(byKey[k]))
		args = append(args, idArgs...)
	}
	rows, err := tx.QueryContext(ctx, b.String(), args...)
	if err != nil {
		return nil, nil, fmt.Errorf("outbox/mysql: claim order: %w", err)
	}
	defer rows.Close()
	first := map[int64]int64{} // key → its lowest row outside the claim
	for rows.Next() {
		var k, id int64
		if err := rows.Scan(&k, &id); err != nil {
			return nil, nil, fmt.Errorf("outbox/mysql: claim order: %w", err)
		}
		first[k] = id
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("outbox/mysql: claim order: %w", err)
	}
	for _, c := range cands {
		if f, found := first[c.key]; c.key != 0 && found && c.rec.ID > f {
			continue
		}
		ok = append(ok, c)
	}
	for k := range first {
		blocked = append(blocked, k)
	}
	return ok, blocked, nil
}

// lease hides the claimed rows from other claimers until lease has passed.
func (s *Store) lease(ctx context.Context, tx *sql.Tx, owner string, cands []candidate, lease time.Duration) error {
	ids := make([]int64, len(cands))
	for i, c := range cands {
		ids[i] = c.rec.ID
	}
	in, args := inList(ids)
	args = append([]any{lease.Microseconds(), owner}, args...)
	if _, err := tx.ExecContext(ctx, `UPDATE `+s.q+
		` SET available_at = NOW(6) + INTERVAL ? MICROSECOND, claimed_by = ?, last_send_at = NOW(3) WHERE id IN `+in, args...); err != nil {
		return fmt.Errorf("outbox/mysql: claim: %w", err)
	}
	return nil
}

// Delete implements outbox.Store.
func (s *Store) Delete(ctx context.Context, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	in, args := inList(ids)
	if _, err := s.db.ExecContext(ctx, `DELETE FROM `+s.q+` WHERE id IN `+in, args...); err != nil {
		return fmt.Errorf("outbox/mysql: delete: %w", err)
	}
	return nil
}

// maxErrorLen bounds last_error to its column.
const maxErrorLen = 1024

// Fail implements outbox.Store. available_at is assigned before attempts
// because MySQL evaluates single-table assignments left to right.
func (s *Store) Fail(ctx context.Context, owner string, ids []int64, cause string) error {
	if len(ids) == 0 {
		return nil
	}
	if len(cause) > maxErrorLen {
		cause = cause[:maxErrorLen]
	}
	var ownerArg any // NULL for rows nobody claimed
	if owner != "" {
		ownerArg = owner
	}
	in, idArgs := inList(ids)
	args := append([]any{s.opts.RetryBase.Microseconds(), s.opts.RetryMax.Microseconds(), cause}, idArgs...)
	args = append(args, ownerArg)
	_, err := s.db.ExecContext(ctx, `UPDATE `+s.q+` SET
		available_at = NOW(6) + INTERVAL FLOOR(LEAST(? * POW(2, LEAST(attempts, 30)), ?)) MICROSECOND,
		attempts = attempts + 1, last_error = ?, claimed_by = NULL
		WHERE id IN `+in+` AND claimed_by <=> ?`, args...)
	if err != nil {
		return fmt.Errorf("outbox/mysql: fail: %w", err)
	}
	return nil
}

// Remaining implements outbox.Store.
func (s *Store) Remaining(ctx context.Context, ids []int64) ([]int64, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	in, args := inList(ids)
	rows, err := s.db.QueryContext(ctx, `SELECT id FROM `+s.q+` WHERE id IN `+in, args...)
	if err != nil {
		return nil, fmt.Errorf("outbox/mysql: remaining: %w", err)
	}
	defer rows.Close()
	var left []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("outbox/mysql: remaining: %w", err)
		}
		left = append(left, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("outbox/mysql: remaining: %w", err)
	}
	return left, nil
}

// Purge implements outbox.Store.
func (s *Store) Purge(ctx context.Context) (int64, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM `+s.q)
	if err != nil {
		return 0, fmt.Errorf("outbox/mysql: purge: %w", err)
	}
	return res.RowsAffected()
}

// Len implements outbox.Store.
func (s *Store) Len(ctx context.Context) (int, error) {
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+s.q).Scan(&n); err != nil {
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
