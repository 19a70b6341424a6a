package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/finalbus/final/outbox"
)

// Inbox is an outbox.Inbox in PostgreSQL: one row per handled message,
// keyed by its topic and UUID.
type Inbox struct {
	db *sql.DB
	t  table
}

var _ outbox.Inbox = (*Inbox)(nil)

// Longest UUID and topic the inbox records, in bytes, as in outbox/mysql.
// Longer ones are refused before any statement runs.
const (
	inboxUUIDBytes  = 256
	inboxTopicBytes = outbox.MaxTopicLen
)

// inboxMigrations of the inbox table, in order, recorded in the same
// version table as the outbox's. The columns are BYTEA so that the key
// compares byte for byte and holds any bytes: a TEXT value must be valid
// in the database's encoding, and a refused value would abort the
// handler's transaction.
var inboxMigrations = []migration{
	{1, "create inbox table", func(ctx context.Context, tx *sql.Tx, t table) error {
		if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS `+t.q+` (
			topic      BYTEA NOT NULL,
			uuid       BYTEA NOT NULL,
			handled_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
			PRIMARY KEY (topic, uuid)
		)`); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `CREATE INDEX IF NOT EXISTS `+quote(derivedName(t.name, "handled"))+
			` ON `+t.q+` (handled_at)`)
		return err
	}},
}

// InboxSchemaVersion is the version Migrate brings an inbox table to.
func InboxSchemaVersion() int { return inboxMigrations[len(inboxMigrations)-1].version }

// NewInbox returns the inbox in table name; it fails with
// outbox.ErrInvalidIdentifier when name is not a safe identifier or
// longer than 63 bytes.
func NewInbox(db *sql.DB, name string) (*Inbox, error) {
	if db == nil {
		return nil, errors.New("outbox/postgres: nil *sql.DB")
	}
	t, err := newTable(name)
	if err != nil {
		return nil, err
	}
	return &Inbox{db: db, t: t}, nil
}

// Table returns the table name.
func (in *Inbox) Table() string { return in.t.name }

// Migrate implements outbox.Inbox, under the same advisory lock as the
// outbox's migrations of the table.
func (in *Inbox) Migrate(ctx context.Context) error {
	if err := createShared(ctx, in.db, versionTable); err != nil {
		return err
	}
	return migrate(ctx, in.db, in.t, inboxMigrations)
}

// Record implements outbox.Inbox. ON CONFLICT DO NOTHING makes a
// duplicate an insert of no row, not an error, which would abort tx. An
// insert of a key that a transaction still open inserted waits for that
// transaction: its commit makes this one a duplicate, its rollback lets
// this one insert.
//
// In a REPEATABLE READ or SERIALIZABLE transaction, a duplicate committed
// after tx's snapshot was taken is a serialization failure (SQLSTATE
// 40001), as PostgreSQL reports it: tx must be retried.
func (in *Inbox) Record(ctx context.Context, tx outbox.Tx, uuid, topic string) (bool, error) {
	// Refused before the statement, which would abort tx if it failed.
	if len(uuid) > inboxUUIDBytes || len(topic) > inboxTopicBytes {
		return false, fmt.Errorf("outbox/postgres: inbox record: uuid of %d bytes or topic of %d exceeds the limits (%d, %d)",
			len(uuid), len(topic), inboxUUIDBytes, inboxTopicBytes)
	}
	n, err := tx.Exec(ctx, `INSERT INTO `+in.t.q+` (topic, uuid, handled_at) VALUES ($1, $2, clock_timestamp())
		ON CONFLICT (topic, uuid) DO NOTHING`, []byte(topic), []byte(uuid))
	if err != nil {
		return false, fmt.Errorf("outbox/postgres: inbox record: %w", err)
	}
	return n == 0, nil
}

// Prune implements outbox.Inbox, deleting in chunks so that no statement
// holds many locks.
func (in *Inbox) Prune(ctx context.Context, keep time.Duration) (int64, error) {
	const chunk = 5000
	var total int64
	for {
		res, err := in.db.ExecContext(ctx, `DELETE FROM `+in.t.q+` WHERE (topic, uuid) IN (
			SELECT topic, uuid FROM `+in.t.q+` WHERE handled_at < clock_timestamp() - `+micros("$1")+` LIMIT `+fmt.Sprint(chunk)+`)`,
			keep.Microseconds())
		if err != nil {
			return total, fmt.Errorf("outbox/postgres: inbox prune: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return total, fmt.Errorf("outbox/postgres: inbox prune: %w", err)
		}
		total += n
		if n < chunk {
			return total, nil
		}
	}
}
