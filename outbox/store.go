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
	"errors"
	"hash/fnv"
	"time"

	"github.com/finalbus/final/message"
)

// ErrInvalidIdentifier is returned for a table name that is not a safe SQL
// identifier.
var ErrInvalidIdentifier = errors.New("outbox: invalid identifier")

// ErrTransient is wrapped by the errors of Insert, InsertBatch, Read,
// ReadTx, Delete, Fail and Release that may go away if the call is made
// again: the connection was lost, the server is shutting down or
// read-only for a failover, the statement was chosen as a deadlock victim,
// waited too long for a lock or ran out of time. Any other error (a
// missing table, a privilege denied) is permanent: the same call fails
// again. Inside a transaction it is the transaction that may succeed if
// made again: roll it back and start over from Begin. Do not repeat the
// call on it: the database may have rolled the transaction back already
// (MySQL after a deadlock then runs the next statement on its own).
var ErrTransient = errors.New("outbox: transient error")

// Row is what Insert writes.
type Row struct {
	// Body is the message encoded by message.Marshal.
	Body []byte
	// OrderKey groups rows whose order the relay keeps (see OrderKey);
	// zero means the row is not ordered.
	OrderKey int64
	// AvailableIn is how long after the insert the relay may first claim
	// the row.
	AvailableIn time.Duration
}

// OrderKeyArg is the row's OrderKey as a statement argument: nil (NULL)
// when the row is not ordered.
func (r Row) OrderKeyArg() any {
	if r.OrderKey == 0 {
		return nil
	}
	return r.OrderKey
}

// OrderKey returns the order key of messages with key under topic, or 0
// when key is empty. It is a 64-bit FNV-1a hash: two keys that collide
// only wait for each other, which costs latency and never order.
func OrderKey(topic, key string) int64 {
	if key == "" {
		return 0
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte(topic))
	_, _ = h.Write([]byte{0}) // ("ab","c") and ("a","bc") differ
	_, _ = h.Write([]byte(key))
	if k := int64(h.Sum64()); k != 0 {
		return k
	}
	return 1 // 0 means "no key"
}

// Record is one outbox row handed to the relay. A store fills in ID,
// Body, OrderKey and Attempts, and calls Decode for the rest.
type Record struct {
	ID int64
	// Message is the row's decoded message; nil when the row is a pack or
	// Err is set. Its Payload is a slice of Body (message.UnmarshalShared),
	// not a copy.
	Message *message.Message
	// Pack is the decoded messages of a row that holds several (see
	// Pack); nil otherwise. Parts gives either as a list.
	Pack []Part
	// Body is the row as stored: one message encoded by message.Marshal,
	// or a pack of them.
	Body []byte
	// OrderKey is the row's Row.OrderKey.
	OrderKey int64
	// Attempts counts the publishes of this row that failed so far.
	Attempts int
	// Err is set when the stored message cannot be decoded (it wraps
	// message.ErrDecode). Such a row is never sent; the relay records the
	// failure, and the row backs off and stays in the table.
	Err error
}

// Store is an outbox table. All methods are safe for concurrent use.
type Store interface {
	// Migrate creates the table or upgrades it to the current schema.
	Migrate(ctx context.Context) error
	// Insert writes row inside tx (or on its own when tx is nil) and
	// returns its id. It runs one statement on tx, which must not fail as
	// part of normal operation: in PostgreSQL a failed statement aborts
	// the caller's whole transaction.
	Insert(ctx context.Context, tx Tx, row Row) (int64, error)
	// Claim leases up to limit available rows to owner for lease, so that
	// no other owner claims them meanwhile, and returns them in id order.
	// Rows locked by a concurrent claim are skipped, not waited for
	// (MySQL, PostgreSQL), or the claims run one after another (SQLite,
	// which has one writer at a time).
	//
	// maxBytes bounds the claim in bytes (0: no bound): Claim stops adding
	// rows once their bodies reach maxBytes, but always claims one row if
	// any is available, so a claim holds at most maxBytes plus one body.
	// The rows it leaves out are left available, and the rule below holds
	// for those it takes.
	//
	// A row with an OrderKey is claimed only if every row of the same
	// OrderKey with a lower id that is still in the table is claimed in
	// the same call or is leased to owner already (owner is sending it,
	// and must keep its rows in order): a row behind one that another
	// owner leased, or that waits out a backoff or is not yet available,
	// stays where it is. Claim may then return fewer than limit rows
	// although more are available.
	Claim(ctx context.Context, owner string, limit, maxBytes int, lease time.Duration) ([]Record, error)
	// Delete removes confirmed rows.
	Delete(ctx context.Context, ids []int64) error
	// Fail records a failed publish of rows leased to owner ("" for rows
	// nobody claimed): it counts the attempt, keeps cause as the last
	// error, and makes the rows available again after a backoff that grows
	// with their attempts.
	Fail(ctx context.Context, owner string, ids []int64, cause string) error
	// Release gives back rows leased to owner that were not sent (an
	// earlier row of their key held them back): they are available again
	// at once, and their attempts and last error stay as they were. Rows
	// no longer leased to owner are left alone; owner "" releases nothing.
	Release(ctx context.Context, owner string, ids []int64) error
	// Remaining returns those of ids that are still in the table.
	Remaining(ctx context.Context, ids []int64) ([]int64, error)
	// Purge deletes every row and returns how many.
	Purge(ctx context.Context) (int64, error)
	// Len counts the rows.
	Len(ctx context.Context) (int, error)
}
