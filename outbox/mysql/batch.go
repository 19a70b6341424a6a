package mysql

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync"

	"github.com/finalbus/final/outbox"
)

// A multi-row insert holds at most maxBatchRows rows, and no more once
// their bodies reach maxBatchBytes (well under max_allowed_packet's
// default of 16 MiB, plus one body).
const (
	maxBatchRows  = 64
	maxBatchBytes = 1 << 20
)

// batchStmts holds the multi-row inserts prepared so far, one per row
// count, each prepared on first use.
type batchStmts struct {
	mu    sync.Mutex
	stmts map[int]*sql.Stmt
}

var _ outbox.BatchInserter = (*Store)(nil)

// InsertBatch implements outbox.BatchInserter. On MariaDB, inside a
// *sql.Tx (outbox.SQLTx) or with no transaction, it writes up to
// maxBatchRows rows in one INSERT … RETURNING id. MySQL has no RETURNING,
// and its default auto-increment lock mode does not number a statement's
// rows consecutively, so there, and on a Tx that is not a *sql.Tx (whose
// Exec and QueryRow cannot read several rows), it inserts each row.
func (s *Store) InsertBatch(ctx context.Context, tx outbox.Tx, rows []outbox.Row) ([]int64, error) {
	if s.insert == nil {
		return nil, fmt.Errorf("outbox/mysql: InsertBatch before Migrate")
	}
	stx := outbox.AsSQLTx(tx)
	if !s.returning || (tx != nil && stx == nil) {
		return outbox.InsertEach(ctx, s, tx, rows)
	}
	ids := make([]int64, 0, len(rows))
	for batch := range outbox.Batches(rows, maxBatchRows, maxBatchBytes) {
		got, err := s.insertRows(ctx, stx, batch)
		if err != nil {
			return nil, err
		}
		ids = append(ids, got...)
	}
	return ids, nil
}

// insertRows writes rows in one statement, in stx or on its own when stx
// is nil.
func (s *Store) insertRows(ctx context.Context, stx *sql.Tx, rows []outbox.Row) ([]int64, error) {
	stmt, text, err := s.batchStmt(ctx, len(rows))
	if err != nil {
		return nil, err
	}
	args := make([]any, 0, 3*len(rows))
	for _, r := range rows {
		var key any // NULL: not ordered
		if r.OrderKey != 0 {
			key = r.OrderKey
		}
		args = append(args, r.Body, r.AvailableIn.Microseconds(), key)
	}
	var res *sql.Rows
	if stx == nil {
		res, err = stmt.QueryContext(ctx, args...)
	} else {
		// As in Insert: a transaction of another *sql.DB runs the text.
		res, err = stx.StmtContext(ctx, stmt).QueryContext(ctx, args...)
		if err != nil && strings.Contains(err.Error(), "statement from different database") {
			res, err = stx.QueryContext(ctx, text, args...)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("outbox/mysql: insert: %w", err)
	}
	defer res.Close()
	ids := make([]int64, 0, len(rows))
	for res.Next() {
		var id int64
		if err := res.Scan(&id); err != nil {
			return nil, fmt.Errorf("outbox/mysql: insert: read the ids: %w", err)
		}
		ids = append(ids, id)
	}
	if err := res.Err(); err != nil {
		return nil, fmt.Errorf("outbox/mysql: insert: %w", err)
	}
	return outbox.PairIDs(ids, len(rows))
}

// batchStmt returns the insert of n rows, preparing it on first use.
func (s *Store) batchStmt(ctx context.Context, n int) (*sql.Stmt, string, error) {
	text := s.batchSQL(n)
	s.batch.mu.Lock()
	defer s.batch.mu.Unlock()
	if stmt, ok := s.batch.stmts[n]; ok {
		return stmt, text, nil
	}
	stmt, err := s.db.PrepareContext(ctx, text)
	if err != nil {
		return nil, "", fmt.Errorf("outbox/mysql: prepare insert of %d rows: %w", n, err)
	}
	if s.batch.stmts == nil {
		s.batch.stmts = make(map[int]*sql.Stmt)
	}
	s.batch.stmts[n] = stmt
	return stmt, text, nil
}

// batchSQL is the insert of n rows, returning their ids.
func (s *Store) batchSQL(n int) string {
	const row = `(?, 0, NOW(3), NOW(6) + INTERVAL ? MICROSECOND, ?)`
	var b strings.Builder
	b.WriteString(`INSERT INTO ` + s.t.q + ` (message, status, create_at, available_at, order_key) VALUES `)
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(row)
	}
	b.WriteString(` RETURNING id`)
	return b.String()
}

// close closes the prepared inserts.
func (b *batchStmts) close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	var first error
	for n, stmt := range b.stmts {
		if err := stmt.Close(); err != nil && first == nil {
			first = err
		}
		delete(b.stmts, n)
	}
	return first
}
