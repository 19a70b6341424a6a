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
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/finalbus/final/outbox"
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

// Claim implements outbox.Store. It runs in READ COMMITTED so that the
// scan takes no gap locks that would stall business transactions inserting
// rows, and uses SKIP LOCKED so that concurrent claimers split the rows.
//
// Concurrent claimers can still deadlock: the lease rewrites the indexed
// available_at while another claimer walks that index. InnoDB then rolls
// one claim back whole, so it is simply tried again.
//
// The claim decides on the rows' sizes (LENGTH(message)). Its scan reads
// the messages of up to inlineBody bytes along (one statement less per
// claim); larger ones it reads for the rows it takes only, so a claim
// bounded by maxBytes reads no more than that of a backlog of large
// messages, plus at most limit × inlineBody bytes of small ones per scan
// (a claim makes up to maxClaimPasses scans, and a key's rows are read
// again as they are locked).
func (s *Store) Claim(ctx context.Context, owner string, limit, maxBytes int, lease time.Duration) ([]outbox.Record, error) {
	for attempt := 1; ; attempt++ {
		recs, err := s.claim(ctx, owner, limit, maxBytes, lease)
		if err == nil || attempt == maxClaimAttempts || !retryable(err) {
			return recs, err
		}
	}
}

const maxClaimAttempts = 5

func (s *Store) claim(ctx context.Context, owner string, limit, maxBytes int, lease time.Duration) ([]outbox.Record, error) {
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		return nil, fmt.Errorf("outbox/mysql: claim: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op

	var (
		taken []candidate
		bytes int
		seen  []int64 // order keys handled by an earlier pass
	)
	enough := func() bool { return maxBytes > 0 && bytes >= maxBytes }
	// Rows of a key held back by an earlier row stay at the head of the
	// scan; the next pass looks past the keys seen so far, so that a key
	// stuck behind a failing row does not stall the others.
	for pass := 0; pass < maxClaimPasses && len(taken) < limit && !enough(); pass++ {
		cands, err := s.candidates(ctx, tx, limit-len(taken), seen)
		if err != nil {
			return nil, err
		}
		if len(cands) == 0 {
			break
		}
		ok, keys, held, err := s.inOrder(ctx, tx, owner, cands)
		if err != nil {
			return nil, err
		}
		// Cut at maxBytes in id order: what a key loses is the end of its
		// run, so the rows taken still keep the key's order.
		slices.SortFunc(ok, func(a, b candidate) int { return cmp.Compare(a.id, b.id) })
		n := 0
		for n < len(ok) && !enough() {
			bytes += ok[n].size
			n++
		}
		if ok = ok[:n]; len(ok) > 0 {
			if err := s.lease(ctx, tx, owner, ok, lease); err != nil {
				return nil, err
			}
			taken = append(taken, ok...)
		}
		if !held {
			break // no key was held back: the scan is complete
		}
		seen = append(seen, keys...)
	}
	if len(taken) == 0 {
		return nil, nil
	}
	recs, err := s.bodies(ctx, tx, taken)
	if err != nil {
		return nil, err
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("outbox/mysql: claim commit: %w", err)
	}
	sortByID(recs)
	for i := range recs { // decoded once, for the rows claimed only
		recs[i].Decode()
	}
	return recs, nil
}

// candidate is a row a claim may take: what the claim decides on, without
// the message, which is read for the rows taken only.
type candidate struct {
	id, key  int64 // key: the order key, 0 for none
	attempts int
	size     int // bytes of the stored message
	// body is the stored message when the scan read it along (at most
	// inlineBody bytes); nil when it is larger, and read for the rows
	// taken only.
	body []byte
}

// maxClaimPasses bounds the scans of one claim that look past held-back
// keys.
const maxClaimPasses = 4

// maxOrderScan bounds the rows a claim reads to put a key's rows in order,
// per candidate.
const maxOrderScan = 8

// inlineBody is the largest message a claim's scan reads along with the
// row's other columns: a small message costs less read at once than by a
// statement of its own, and a scan reads at most limit × inlineBody
// bytes of messages it may not take (a claim makes up to maxClaimPasses
// scans). Larger ones are read for the rows taken only.
const inlineBody = 4096

var candidateColumns = `id, COALESCE(LENGTH(message), 0), attempts, order_key, ` +
	`CASE WHEN LENGTH(message) <= ` + strconv.Itoa(inlineBody) + ` THEN message END`

// candidates locks up to limit available rows whose order key is not in
// skip, first available first.
func (s *Store) candidates(ctx context.Context, tx *sql.Tx, limit int, skip []int64) ([]candidate, error) {
	query := `SELECT ` + candidateColumns + ` FROM ` + s.t.q + ` WHERE available_at <= NOW(6)`
	var args []any
	if len(skip) > 0 {
		in, keyArgs := inList(skip)
		query += ` AND (order_key IS NULL OR order_key NOT IN ` + in + `)`
		args = keyArgs
	}
	query += ` ORDER BY available_at, id LIMIT ? FOR UPDATE SKIP LOCKED`
	return s.scanCandidates(tx.QueryContext(ctx, query, append(args, limit)...))
}

// scanCandidates reads rows of candidateColumns.
func (s *Store) scanCandidates(rows *sql.Rows, err error) ([]candidate, error) {
	if err != nil {
		return nil, fmt.Errorf("outbox/mysql: claim: %w", err)
	}
	defer rows.Close()
	var cands []candidate
	for rows.Next() {
		var (
			c   candidate
			key sql.NullInt64
		)
		if err := rows.Scan(&c.id, &c.size, &c.attempts, &key, &c.body); err != nil {
			return nil, fmt.Errorf("outbox/mysql: claim scan: %w", err)
		}
		c.key = key.Int64
		cands = append(cands, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("outbox/mysql: claim: %w", err)
	}
	return cands, nil
}

// inOrder returns the rows of cands the claim may take, in their place the
// rows that keep each key in order, the order keys among cands, and
// whether any of those keys yielded nothing.
//
// The scan finds rows first available first, but a key's rows must go in
// id order. So for each key among cands, the claim takes the key's first
// rows by id instead, as many as it has candidates, up to the first one
// that is not available or is locked by another claim. Rows still leased
// to owner are passed over: owner is sending them already, ahead of these.
func (s *Store) inOrder(ctx context.Context, tx *sql.Tx, owner string, cands []candidate) (ok []candidate, keys []int64, held bool, err error) {
	perKey := map[int64]int{}    // candidates by key
	highest := map[int64]int64{} // highest candidate id by key
	for _, c := range cands {
		if c.key == 0 {
			ok = append(ok, c)
			continue
		}
		if perKey[c.key] == 0 {
			keys = append(keys, c.key)
		}
		perKey[c.key]++
		highest[c.key] = max(highest[c.key], c.id)
	}
	if len(keys) == 0 {
		return ok, nil, false, nil
	}

	// Each key's rows up to its highest candidate, in id order, with
	// whether each is available and whether owner leased it already: one
	// index range per key.
	var (
		b    strings.Builder
		args = []any{owner}
	)
	b.WriteString(`SELECT order_key, id, available_at <= NOW(6), claimed_by <=> ? FROM ` + s.t.q + ` WHERE `)
	for i, k := range keys {
		if i > 0 {
			b.WriteString(" OR ")
		}
		b.WriteString(`(order_key = ? AND id <= ?)`)
		args = append(args, k, highest[k])
	}
	// Rows held back by others can make a key's range long; a truncated
	// range only shortens the runs taken from it.
	b.WriteString(` ORDER BY order_key, id LIMIT ?`)
	args = append(args, maxOrderScan*len(cands))
	rows, err := tx.QueryContext(ctx, b.String(), args...)
	if err != nil {
		return nil, nil, false, fmt.Errorf("outbox/mysql: claim order: %w", err)
	}
	type head struct {
		id          int64
		ready, mine bool
	}
	heads := map[int64][]head{}
	for rows.Next() {
		var (
			k int64
			h head
		)
		if err := rows.Scan(&k, &h.id, &h.ready, &h.mine); err != nil {
			rows.Close()
			return nil, nil, false, fmt.Errorf("outbox/mysql: claim order: %w", err)
		}
		heads[k] = append(heads[k], h)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, nil, false, fmt.Errorf("outbox/mysql: claim order: %w", err)
	}
	// The run of each key: its available rows from the lowest on, passing
	// over those owner is sending already, at most as many as it has
	// candidates.
	var wanted []int64
	for _, k := range keys {
		run := heads[k][:0]
		for _, h := range heads[k] {
			if h.mine && !h.ready {
				continue
			}
			if !h.ready || len(run) == perKey[k] {
				break
			}
			run = append(run, h)
			wanted = append(wanted, h.id)
		}
		heads[k] = run
	}
	if len(wanted) == 0 {
		return ok, keys, true, nil
	}

	// Lock them; one locked by another claim, or leased meanwhile, ends
	// its key's run.
	in, idArgs := inList(wanted)
	locked, err := s.scanCandidates(tx.QueryContext(ctx, `SELECT `+candidateColumns+` FROM `+s.t.q+
		` WHERE id IN `+in+` AND available_at <= NOW(6) FOR UPDATE SKIP LOCKED`, idArgs...))
	if err != nil {
		return nil, nil, false, err
	}
	byID := make(map[int64]candidate, len(locked))
	for _, c := range locked {
		byID[c.id] = c
	}
	for _, k := range keys {
		n := 0
		for _, h := range heads[k] {
			c, got := byID[h.id]
			if !got {
				break
			}
			ok = append(ok, c)
			n++
		}
		if n == 0 {
			held = true
		}
	}
	return ok, keys, held, nil
}

// lease hides the claimed rows from other claimers until lease has passed.
func (s *Store) lease(ctx context.Context, tx *sql.Tx, owner string, taken []candidate, lease time.Duration) error {
	ids := make([]int64, len(taken))
	for i, c := range taken {
		ids[i] = c.id
	}
	in, args := inList(ids)
	args = append([]any{lease.Microseconds(), owner}, args...)
	if _, err := tx.ExecContext(ctx, `UPDATE `+s.t.q+
		` SET available_at = NOW(6) + INTERVAL ? MICROSECOND, claimed_by = ?, last_send_at = NOW(3) WHERE id IN `+in, args...); err != nil {
		return fmt.Errorf("outbox/mysql: claim: %w", err)
	}
	return nil
}

// bodies returns the records of the rows taken, which the claim holds
// locked: with the messages the scan read along, and the larger ones read
// now.
func (s *Store) bodies(ctx context.Context, tx *sql.Tx, taken []candidate) ([]outbox.Record, error) {
	recs := make([]outbox.Record, 0, len(taken))
	byID := map[int64]candidate{}
	var ids []int64
	for _, c := range taken {
		if c.body == nil && c.size > 0 { // larger than inlineBody
			byID[c.id] = c
			ids = append(ids, c.id)
			continue
		}
		recs = append(recs, outbox.Record{ID: c.id, Body: c.body, OrderKey: c.key, Attempts: c.attempts})
	}
	if len(ids) == 0 {
		return recs, nil
	}
	in, args := inList(ids)
	rows, err := tx.QueryContext(ctx, `SELECT id, message FROM `+s.t.q+` WHERE id IN `+in, args...)
	if err != nil {
		return nil, fmt.Errorf("outbox/mysql: claim read: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var r outbox.Record
		if err := rows.Scan(&r.ID, &r.Body); err != nil {
			return nil, fmt.Errorf("outbox/mysql: claim read: %w", err)
		}
		c := byID[r.ID]
		r.OrderKey, r.Attempts = c.key, c.attempts
		recs = append(recs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("outbox/mysql: claim read: %w", err)
	}
	return recs, nil
}

// Delete implements outbox.Store.
func (s *Store) Delete(ctx context.Context, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	in, args := inList(ids)
	if _, err := s.db.ExecContext(ctx, `DELETE FROM `+s.t.q+` WHERE id IN `+in, args...); err != nil {
		return wrapError("delete", err)
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
	_, err := s.db.ExecContext(ctx, `UPDATE `+s.t.q+` SET
		available_at = NOW(6) + INTERVAL FLOOR(LEAST(? * POW(2, LEAST(attempts, 30)), ?)) MICROSECOND,
		attempts = attempts + 1, last_error = ?, claimed_by = NULL
		WHERE id IN `+in+` AND claimed_by <=> ?`, args...)
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
	in, args := inList(ids)
	_, err := s.db.ExecContext(ctx, `UPDATE `+s.t.q+` SET available_at = NOW(6), claimed_by = NULL
		WHERE id IN `+in+` AND claimed_by = ?`, append(args, owner)...)
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
	in, args := inList(ids)
	rows, err := s.db.QueryContext(ctx, `SELECT id FROM `+s.t.q+` WHERE id IN `+in, args...)
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
