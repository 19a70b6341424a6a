package outbox

import (
	"context"
	"time"
)

// Holder is a Store whose claims can hold their rows by the claim's own
// transaction instead of a lease: the rows stay locked, unchanged, while
// their messages are published, and the same transaction deletes those
// the broker confirmed. A claim held this way costs the database one
// transaction per batch and no lease written (a leased claim writes every
// row's lease, then deletes the rows in a transaction of its own), and if
// the process dies its rows are available again as soon as the database
// sees its connection closed.
//
// Holding suits a database that locks rows, not tables: PostgreSQL and
// MariaDB/MySQL implement it; SQLite (one writer at a time) cannot. A held
// claim must not keep the business transactions' inserts from committing:
// it takes no lock on the gaps between rows (READ COMMITTED). Besides the
// rows it returns it may keep locked, unsent, some it found and could not
// take: later rows of a key whose earlier row another claim holds, and on
// MariaDB/MySQL rows of its last scan past maxBytes. They are available
// again when it ends; the acker's writes pass over them meanwhile.
type Holder interface {
	Store
	// ClaimHeld locks up to limit available rows, by the rules of Claim
	// (maxBytes, rows locked by others skipped, keys kept in order), in a
	// transaction it leaves open, and returns them with it. The rows are
	// not leased: no other claim takes them while the transaction is open,
	// and they are available again as they were when it ends without
	// deleting them. It returns nil and no error when no row is available.
	// ctx bounds the claim's statements only: the transaction lasts until
	// Commit or Rollback, whatever becomes of ctx.
	//
	// idle bounds how long the transaction may wait for its next statement:
	// past it the database ends the claim's session, which rolls the claim
	// back, so the rows of a process that hangs, or whose host is gone
	// without closing its connection, are available again after idle, as
	// a lease of that length would be.
	//
	// A held claim's rows count as another owner's for the key order of
	// later claims, owner's own included: a later row of their key is not
	// claimed until the held claim ends. Delete, Fail and Release skip rows
	// another transaction holds (a held claim, or a leasing claim for a
	// moment) rather than wait for it: the holder sends them and writes
	// their outcome itself.
	ClaimHeld(ctx context.Context, owner string, limit, maxBytes int, idle time.Duration) (Held, error)
}

// Held is a claim that holds its rows by its open transaction. It is used
// by one goroutine at a time, and must end with Commit or Rollback.
type Held interface {
	// Records returns the claimed rows in id order; the slice is the
	// caller's.
	Records() []Record
	// Fail records failed publishes of rows of the claim in its
	// transaction, as Store.Fail does: the attempt counted, cause kept, the
	// rows available again after a backoff once the claim commits.
	Fail(ctx context.Context, ids []int64, cause string) error
	// Commit deletes the rows of ids, which must be rows of the claim
	// (those the broker confirmed), and commits. The claim's other rows are
	// available again at once, but for those Fail backed off. On an error
	// the transaction is rolled back: nothing it did holds.
	Commit(ctx context.Context, ids []int64) error
	// Rollback ends the claim without a change: its rows are available
	// again at once, as they were.
	Rollback() error
}
