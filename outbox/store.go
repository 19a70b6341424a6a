// Package outbox is the contract for the table that holds messages from the
// transaction that wrote them until the broker confirms them.
//
// A row is written inside the business transaction, deleted when the broker
// confirms it, and otherwise becomes available again to the relay: each row
// has an available_at time that serves as the relay's schedule (fresh rows
// wait OutboxScanAgoTime for the fast path, delayed rows wait for their due
// time, failed rows wait their backoff, claimed rows wait out their lease).
// Implementations live in subpackages (outbox/mysql); outbox/outboxtest is
// the conformance suite.
package outbox

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/finalbus/final/message"
)

// ErrInvalidIdentifier is returned for a table name that is not a safe SQL
// identifier.
var ErrInvalidIdentifier = errors.New("outbox: invalid identifier")

// Record is one outbox row handed to the relay.
type Record struct {
	ID int64
	// Message is the decoded message; nil when Err is set.
	Message *message.Message
	// Body is the message as stored, encoded by message.Marshal.
	Body []byte
	// Attempts counts the publishes of this row that failed so far.
	Attempts int
	// Err is set when the stored message cannot be decoded. Such a row is
	// never sent; the relay records the error and backs off.
	Err error
}

// Store is an outbox table. All methods are safe for concurrent use.
type Store interface {
	// Migrate creates the table or upgrades it to the current schema.
	Migrate(ctx context.Context) error
	// Insert writes body, a message encoded by message.Marshal, inside tx
	// (or on its own when tx is nil) and returns the row id. The relay may
	// claim the row once availableIn has passed.
	Insert(ctx context.Context, tx *sql.Tx, body []byte, availableIn time.Duration) (int64, error)
	// Claim leases up to limit available rows to owner for lease, so that
	// no other owner claims them meanwhile, and returns them in id order.
	// Rows locked by a concurrent claim are skipped, not waited for.
	Claim(ctx context.Context, owner string, limit int, lease time.Duration) ([]Record, error)
	// Delete removes confirmed rows.
	Delete(ctx context.Context, ids []int64) error
	// Fail records a failed publish of rows leased to owner ("" for rows
	// nobody claimed): it counts the attempt, keeps cause as the last
	// error, and makes the rows available again after a backoff that grows
	// with their attempts.
	Fail(ctx context.Context, owner string, ids []int64, cause string) error
	// Purge deletes every row and returns how many.
	Purge(ctx context.Context) (int64, error)
	// Len counts the rows.
	Len(ctx context.Context) (int, error)
}
