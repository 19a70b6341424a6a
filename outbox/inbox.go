package outbox

import (
	"context"
	"database/sql"
	"time"
)

// Inbox records the messages a service handled, inside the handler's own
// transaction, so that a redelivered or duplicated message is recognised
// and its side effects happen once.
type Inbox interface {
	// Migrate creates the table or upgrades it to the current schema.
	Migrate(ctx context.Context) error
	// Record notes uuid as handled inside tx. It reports dup when uuid was
	// recorded by a committed transaction already; a concurrent transaction
	// recording the same uuid waits for the first to end.
	Record(ctx context.Context, tx *sql.Tx, uuid, topic string) (dup bool, err error)
	// Prune deletes records older than keep and returns how many.
	Prune(ctx context.Context, keep time.Duration) (int64, error)
}
