package outbox

import "context"

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
