package outbox

import (
	"context"
	"time"
)

// Limits an Inbox must store at least: a message UUID of MaxUUIDLen bytes
// and a topic of MaxTopicLen bytes. A publisher refuses longer UUIDs, so
// that no consumer meets one it cannot record.
const (
	MaxUUIDLen  = 64
	MaxTopicLen = 255
)

// Inbox records the messages a service handled, inside the handler's own
// transaction, so that a redelivered or duplicated message is recognised
// and its side effects happen once.
//
// A record is keyed by topic and UUID together, as a subscription handles
// a topic: the same UUID on two topics is two messages, each handled once.
type Inbox interface {
	// Migrate creates the table or upgrades it to the current schema.
	Migrate(ctx context.Context) error
	// Record notes (topic, uuid) as handled inside tx. It reports dup when
	// a committed transaction recorded the same topic and uuid already; a
	// concurrent transaction recording them waits for the first to end.
	// Compared byte for byte: UUIDs or topics that differ only in case
	// or trailing spaces are different records.
	Record(ctx context.Context, tx Tx, uuid, topic string) (dup bool, err error)
	// Prune deletes records older than keep and returns how many.
	Prune(ctx context.Context, keep time.Duration) (int64, error)
}
