package outbox

import (
	"context"
	"fmt"
	"iter"
	"slices"
)

// BatchInserter is implemented by a Store that writes several rows in one
// statement: a transaction that publishes ten messages then makes one
// round trip to the database instead of ten. TxBus.PublishMessages uses it
// when the store has it, and calls Insert for each row otherwise.
type BatchInserter interface {
	// InsertBatch writes rows inside tx (or on their own when tx is nil),
	// as Insert does each, and returns their ids in the order of rows. It
	// runs as few statements as the database allows (a statement holds at
	// most a few hundred rows); on error, rows of the statements that ran
	// before it may be written, and the caller rolls tx back to be rid of
	// them.
	InsertBatch(ctx context.Context, tx Tx, rows []Row) ([]int64, error)
}

// InsertAll writes rows inside tx with one InsertBatch when s is a
// BatchInserter, and with one Insert per row otherwise, and returns their
// ids in the order of rows.
func InsertAll(ctx context.Context, s Store, tx Tx, rows []Row) ([]int64, error) {
	if b, ok := s.(BatchInserter); ok {
		return b.InsertBatch(ctx, tx, rows)
	}
	return InsertEach(ctx, s, tx, rows)
}

// InsertEach writes rows with one Insert each: what InsertBatch falls back
// to where a database cannot return the ids of a multi-row insert.
func InsertEach(ctx context.Context, s Store, tx Tx, rows []Row) ([]int64, error) {
	ids := make([]int64, len(rows))
	for i, r := range rows {
		id, err := s.Insert(ctx, tx, r)
		if err != nil {
			return nil, err
		}
		ids[i] = id
	}
	return ids, nil
}

// PairIDs checks the ids a multi-row INSERT returned for n rows and puts
// them in the order of the rows. The database numbers the rows of one
// statement in the order it writes them, which is the order of its VALUES,
// and its sequence only grows: the smallest id is the first row's whatever
// order RETURNING gives them in, even when other transactions' rows take
// the numbers in between.
func PairIDs(ids []int64, n int) ([]int64, error) {
	if len(ids) != n {
		return nil, fmt.Errorf("outbox: a multi-row insert of %d rows returned %d ids", n, len(ids))
	}
	slices.Sort(ids)
	for i := 1; i < len(ids); i++ {
		if ids[i] == ids[i-1] {
			return nil, fmt.Errorf("outbox: a multi-row insert returned id %d twice", ids[i])
		}
	}
	return ids, nil
}

// Batches cuts rows into the statements of a multi-row insert: at most
// maxRows rows each, and no more rows once their bodies reach maxBytes, so
// that a statement holds at most maxBytes plus one body.
func Batches(rows []Row, maxRows, maxBytes int) iter.Seq[[]Row] {
	maxRows = max(maxRows, 1)
	return func(yield func([]Row) bool) {
		for len(rows) > 0 {
			n, bytes := 0, 0
			for n < len(rows) && n < maxRows && bytes < maxBytes {
				bytes += len(rows[n].Body)
				n++
			}
			if !yield(rows[:n]) {
				return
			}
			rows = rows[n:]
		}
	}
}
