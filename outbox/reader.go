package outbox

import (
	"context"
	"database/sql"
	"errors"
)

// TxReader is an optional capability of a Store: reading its rows inside a
// transaction, as that transaction sees them, its own uncommitted rows
// included. TxBus.Outbox uses it, so that a test asserts what a
// transaction published before it commits (package finaltest). Every
// store of this module has it.
type TxReader interface {
	// ReadTx returns the row with the lowest id above after that tx sees,
	// and false when there is none. The record's Message is decoded, or its
	// Err set, as Claim's are. It reads one row per call: a Tx reads one
	// row at a time (Tx.QueryRow), and a test's transaction holds few.
	ReadTx(ctx context.Context, tx Tx, after int64) (rec Record, ok bool, err error)
}

// ReadNextTx is the body of a SQL store's ReadTx: query, in the store's
// dialect, selects the id, message, order key (0 for none) and attempts of
// the row with the lowest id above its one argument, after. The error is
// the driver's, for the store to wrap.
func ReadNextTx(ctx context.Context, tx Tx, query string, after int64) (Record, bool, error) {
	r, err := scanRecord(tx.QueryRow(ctx, query, after).Scan)
	if errors.Is(err, sql.ErrNoRows) {
		return Record{}, false, nil
	}
	if err != nil {
		return Record{}, false, err
	}
	return r, true, nil
}

// scanRecord scans the id, message, order key and attempts of a row and
// decodes it.
func scanRecord(scan func(dest ...any) error) (Record, error) {
	var r Record
	if err := scan(&r.ID, &r.Body, &r.OrderKey, &r.Attempts); err != nil {
		return Record{}, err
	}
	r.Decode()
	return r, nil
}

// Reader is an optional capability of a Store: reading committed rows by
// id, without leasing or changing them. The fast path uses it to read back
// the committed rows it had no room for while their OutboxScanAgoTime
// window is open, in which no relay claims them (final.Options,
// DispatchQueueSize). A bus whose store lacks it leaves those rows to the
// relay. Every store of this module has it.
type Reader interface {
	// Read returns those of ids whose rows are committed and in the table,
	// in id order, decoded as Claim's are (Message, or Err for a row that
	// cannot be decoded). The bus passes at most OutboxScanOffset ids
	// (10,000 at most) per call.
	Read(ctx context.Context, ids []int64) ([]Record, error)
}

// ReadRows is the body of a SQL store's Read: query, in the store's
// dialect with args, selects the id, message, order key (0 for none) and
// attempts of the rows to read. The error is the driver's, for the store
// to wrap.
func ReadRows(ctx context.Context, db *sql.DB, query string, args ...any) ([]Record, error) {
	rows, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var recs []Record
	for rows.Next() {
		r, err := scanRecord(rows.Scan)
		if err != nil {
			return nil, err
		}
		recs = append(recs, r)
	}
	return recs, rows.Err()
}
