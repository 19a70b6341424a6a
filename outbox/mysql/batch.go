package mysql

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/finalbus/final/outbox"
)

// A multi-row insert holds at most maxBatchRows rows, and no more once
// their bodies reach maxBatchBytes (well under max_allowed_packet's
// default of 16 MiB, plus one body).
const (
	maxBatchRows  = 64
	maxBatchBytes = 1 << 20
)

// batchSizes are the row counts of the multi-row inserts prepared at
// Migrate: every count up to 16, which covers most transactions in one
// statement, then 32 and 64. Preparing them there, not on first use,
// matters: a transaction that had to prepare one on the *sql.DB would wait
// for a free connection while holding its own, and a pool full of such
// transactions would wait forever. On each connection a statement is
// prepared once, by the first transaction that uses it there.
var batchSizes = []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 32, 64}

var _ outbox.BatchInserter = (*Store)(nil)

// InsertBatch implements outbox.BatchInserter. On MariaDB, inside a
// *sql.Tx (outbox.SQLTx) or with no transaction, it writes rows in
// INSERT … RETURNING id statements of the sizes in batchSizes: ten rows in
// one, forty in two (32 and 8). MySQL has no RETURNING, and its default
// auto-increment lock mode does not number a statement's rows
// consecutively, so there, and on a Tx that is not a *sql.Tx (whose Exec
// and QueryRow cannot read several rows), it inserts each row.
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
		for len(batch) > 0 {
			n := preparedSize(len(batch))
			got, err := s.insertRows(ctx, stx, batch[:n])
			if err != nil {
				return nil, err
			}
			ids = append(ids, got...)
			batch = batch[n:]
		}
	}
	return ids, nil
}

// preparedSize is the largest of batchSizes that is at most n.
func preparedSize(n int) int {
	best := 1
	for _, size := range batchSizes {
		if size <= n {
			best = size
		}
	}
	return best
}

// insertRows writes rows, as many as one of batchSizes, in one statement,
// in stx or on their own when stx is nil.
func (s *Store) insertRows(ctx context.Context, stx *sql.Tx, rows []outbox.Row) ([]int64, error) {
	stmt, ok := s.batch[len(rows)]
	if !ok {
		return nil, fmt.Errorf("outbox/mysql: no insert of %d rows prepared", len(rows))
	}
	args := make([]any, 0, 3*len(rows))
	for _, r := range rows {
		args = append(args, r.Body, r.AvailableIn.Microseconds(), r.OrderKeyArg())
	}
	var (
		res *sql.Rows
		err error
	)
	if stx == nil {
		res, err = stmt.QueryContext(ctx, args...)
	} else {
		// As in Insert: a transaction of another *sql.DB runs the text.
		res, err = stx.StmtContext(ctx, stmt).QueryContext(ctx, args...)
		if err != nil && strings.Contains(err.Error(), "statement from different database") {
			res, err = stx.QueryContext(ctx, s.batchSQL(len(rows)), args...)
		}
	}
	if err != nil {
		return nil, wrapError("insert", err)
	}
	defer res.Close()
	ids := make([]int64, 0, len(rows))
	for res.Next() {
		var id int64
		if err := res.Scan(&id); err != nil {
			return nil, wrapError("insert: read the ids", err)
		}
		ids = append(ids, id)
	}
	if err := res.Err(); err != nil {
		return nil, wrapError("insert", err)
	}
	return outbox.PairIDs(ids, len(rows))
}

// prepareBatches prepares the inserts of batchSizes rows.
func (s *Store) prepareBatches(ctx context.Context) (map[int]*sql.Stmt, error) {
	stmts := make(map[int]*sql.Stmt, len(batchSizes))
	for _, n := range batchSizes {
		stmt, err := s.db.PrepareContext(ctx, s.batchSQL(n))
		if err != nil {
			closeAll(stmts)
			return nil, fmt.Errorf("outbox/mysql: prepare insert of %d rows: %w", n, err)
		}
		stmts[n] = stmt
	}
	return stmts, nil
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

// closeAll closes stmts and returns the first error.
func closeAll(stmts map[int]*sql.Stmt) error {
	var first error
	for _, stmt := range stmts {
		if err := stmt.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}
