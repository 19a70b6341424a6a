package postgres

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/finalbus/final/outbox"
)

// A multi-row insert holds at most maxBatchRows rows (three parameters
// each, far from the protocol's 65,535), and no more once their bodies
// reach maxBatchBytes (plus one body).
const (
	maxBatchRows  = 64
	maxBatchBytes = 1 << 20
)

var _ outbox.BatchInserter = (*Store)(nil)

// InsertBatch implements outbox.BatchInserter: up to maxBatchRows rows in
// one INSERT, whose ids come back as one row (a text list aggregated from
// RETURNING), so that it runs on any outbox.Tx, a pgx.Tx included.
func (s *Store) InsertBatch(ctx context.Context, tx outbox.Tx, rows []outbox.Row) ([]int64, error) {
	ids := make([]int64, 0, len(rows))
	for batch := range outbox.Batches(rows, maxBatchRows, maxBatchBytes) {
		got, err := s.insertRows(ctx, tx, batch)
		if err != nil {
			return nil, err
		}
		ids = append(ids, got...)
	}
	return ids, nil
}

// insertRows writes rows in one statement.
func (s *Store) insertRows(ctx context.Context, tx outbox.Tx, rows []outbox.Row) ([]int64, error) {
	args := make([]any, 0, 3*len(rows))
	for _, r := range rows {
		args = append(args, r.Body, r.AvailableIn.Microseconds(), r.OrderKeyArg())
	}
	query := s.batchSQL(len(rows))
	var r outbox.RowScanner
	if tx == nil {
		r = s.db.QueryRowContext(ctx, query, args...)
	} else {
		r = tx.QueryRow(ctx, query, args...)
	}
	var list string
	if err := r.Scan(&list); err != nil {
		return nil, wrapError("insert", err)
	}
	ids := make([]int64, 0, len(rows))
	for f := range strings.SplitSeq(list, ",") {
		id, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("outbox/postgres: insert: read the ids %q: %w", list, err)
		}
		ids = append(ids, id)
	}
	return outbox.PairIDs(ids, len(rows))
}

// batchSQL is the insert of n rows. RETURNING gives as many rows as it
// wrote; the outer SELECT folds their ids into one text, so that the
// statement returns one row.
func (s *Store) batchSQL(n int) string {
	var b strings.Builder
	b.WriteString(`WITH ins AS (INSERT INTO ` + s.t.q + ` (message, available_at, order_key) VALUES `)
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		p := 3 * i
		fmt.Fprintf(&b, "($%d, clock_timestamp() + %s, $%d)", p+1, micros("$"+strconv.Itoa(p+2)), p+3)
	}
	b.WriteString(` RETURNING id) SELECT string_agg(id::text, ',') FROM ins`)
	return b.String()
}
