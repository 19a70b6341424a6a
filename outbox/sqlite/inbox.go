package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/finalbus/final/outbox"
)

// Inbox is an outbox.Inbox in SQLite: one row per handled message, keyed
// by its topic and UUID. TEXT compares byte for byte (SQLite's BINARY
// collation), and has no length limit, so no key is cut short.
type Inbox struct {
	db *sql.DB
	t  table
}

var _ outbox.Inbox = (*Inbox)(nil)

// inboxMigrations of the inbox table, in order, recorded in the same
// version table as the outbox's.
var inboxMigrations = []migration{
	{1, "create inbox table", func(ctx context.Context, c *sql.Conn, t table) error {
		return execAll(ctx, c,
			`CREATE TABLE `+t.q+` (
				topic      TEXT NOT NULL,
				uuid       TEXT NOT NULL,
				handled_at INTEGER NOT NULL,
				PRIMARY KEY (topic, uuid)
			)`,
			`CREATE INDEX `+t.index("final_handled")+` ON `+t.q+` (handled_at)`)
	}},
}

// InboxSchemaVersion is the version Migrate brings an inbox table to.
func InboxSchemaVersion() int { return inboxMigrations[len(inboxMigrations)-1].version }

// NewInbox returns the inbox in table name; it fails with
// outbox.ErrInvalidIdentifier when name is not a safe identifier.
func NewInbox(db *sql.DB, name string) (*Inbox, error) {
	if db == nil {
		return nil, errors.New("outbox/sqlite: nil *sql.DB")
	}
	t, err := newTable(name)
	if err != nil {
		return nil, err
	}
	return &Inbox{db: db, t: t}, nil
}

// Table returns the table name.
func (in *Inbox) Table() string { return in.t.name }

// Migrate implements outbox.Inbox, with the checks and the serialisation
// of the outbox's Migrate.
func (in *Inbox) Migrate(ctx context.Context) error {
	return migrate(ctx, in.db, in.t, inboxMigrations, nil)
}

// Record implements outbox.Inbox. The insert does nothing on a key that is
// there already, and reports it by the rows it changed, so that nothing
// fails inside the caller's transaction. SQLite has one writer at a time:
// the insert waits, up to the busy timeout, for any other transaction
// that wrote, whatever its key, and then sees what it committed.
func (in *Inbox) Record(ctx context.Context, tx outbox.Tx, uuid, topic string) (bool, error) {
	n, err := tx.Exec(ctx, `INSERT INTO `+in.t.q+` (topic, uuid, handled_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`,
		topic, uuid, time.Now().UnixMicro())
	if err != nil {
		return false, wrapError("inbox record", err)
	}
	return n == 0, nil
}

// pruneBatch bounds the rows one statement of Prune deletes, so that it
// holds the write lock briefly.
const pruneBatch = 5000

// Prune implements outbox.Inbox, deleting in chunks so that writers wait
// for no long statement.
func (in *Inbox) Prune(ctx context.Context, keep time.Duration) (int64, error) {
	before := time.Now().Add(-keep).UnixMicro()
	var total int64
	for {
		res, err := in.db.ExecContext(ctx, `DELETE FROM `+in.t.q+` WHERE rowid IN (
			SELECT rowid FROM `+in.t.q+` WHERE handled_at < ? LIMIT ?)`, before, pruneBatch)
		if err != nil {
			return total, wrapError("inbox prune", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return total, wrapError("inbox prune", err)
		}
		total += n
		if n < pruneBatch {
			return total, nil
		}
	}
}
