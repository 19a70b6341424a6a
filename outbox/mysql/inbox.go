package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	gomysql "github.com/go-sql-driver/mysql"

	"github.com/finalbus/final/outbox"
)

// Inbox is an outbox.Inbox in MariaDB or MySQL: one row per handled
// message, keyed by its topic and UUID.
type Inbox struct {
	db *sql.DB
	t  table
}

var _ outbox.Inbox = (*Inbox)(nil)

// Column sizes of the inbox, in bytes. The columns are VARBINARY so that
// the key compares byte for byte: a case-insensitive or PAD SPACE
// collation would take "ab" for "AB" or "ab ".
const (
	// inboxUUIDBytes holds any UUID of outbox.MaxUUIDLen, and any that
	// version 1's VARCHAR(64) held (64 characters of up to 4 bytes).
	inboxUUIDBytes  = 256
	inboxTopicBytes = outbox.MaxTopicLen
)

// inboxMigrations of the inbox table, in order, recorded in the same
// version table as the outbox's.
var inboxMigrations = []migration{
	// The table as the releases before versioned inbox migrations made it.
	{1, "create inbox table", func(ctx context.Context, c *sql.Conn, t table) error {
		_, err := c.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS `+t.q+` (
			uuid       VARCHAR(64) NOT NULL PRIMARY KEY,
			topic      VARCHAR(255) NOT NULL,
			handled_at DATETIME(6) NOT NULL,
			KEY idx_final_handled (handled_at)
		) ENGINE=InnoDB`)
		return err
	}},
	// Version 1 kept one record per UUID for all topics. Its rows keep
	// their topic and UUID, which were unique already. One statement, so
	// that it is done whole or not at all.
	{2, "key by topic and uuid", func(ctx context.Context, c *sql.Conn, t table) error {
		key, err := t.indexColumns(ctx, c, "PRIMARY")
		if err != nil || slices.Equal(key, []string{"topic", "uuid"}) {
			return err
		}
		_, err = c.ExecContext(ctx, fmt.Sprintf(`ALTER TABLE %s
			MODIFY uuid  VARBINARY(%d) NOT NULL,
			MODIFY topic VARBINARY(%d) NOT NULL,
			DROP PRIMARY KEY,
			ADD PRIMARY KEY (topic, uuid)`, t.q, inboxUUIDBytes, inboxTopicBytes))
		return err
	}},
}

// InboxSchemaVersion is the version Migrate brings an inbox table to.
func InboxSchemaVersion() int { return inboxMigrations[len(inboxMigrations)-1].version }

// NewInbox returns the inbox in table name; it fails with
// outbox.ErrInvalidIdentifier when name is not a safe identifier or too
// long as a file name.
func NewInbox(db *sql.DB, name string) (*Inbox, error) {
	if db == nil {
		return nil, errors.New("outbox/mysql: nil *sql.DB")
	}
	t, err := newTable(name)
	if err != nil {
		return nil, err
	}
	return &Inbox{db: db, t: t}, nil
}

// Table returns the table name.
func (in *Inbox) Table() string { return in.t.name }

// Migrate implements outbox.Inbox. It upgrades a table of an earlier
// release in place, keeping its records, under the same named lock as
// the outbox's migrations.
func (in *Inbox) Migrate(ctx context.Context) error {
	return migrate(ctx, in.db, in.t, inboxMigrations)
}

// Record implements outbox.Inbox. The primary key does the work: a second
// insert of the same topic and UUID fails with a duplicate-key error once
// the first has committed, and waits on its row lock until then.
func (in *Inbox) Record(ctx context.Context, tx outbox.Tx, uuid, topic string) (bool, error) {
	// Refused rather than cut short, which a server without strict mode
	// does silently: two UUIDs alike up to the cut would be one record.
	if len(uuid) > inboxUUIDBytes || len(topic) > inboxTopicBytes {
		return false, fmt.Errorf("outbox/mysql: inbox record: uuid of %d bytes or topic of %d exceeds the columns (%d, %d)",
			len(uuid), len(topic), inboxUUIDBytes, inboxTopicBytes)
	}
	_, err := tx.Exec(ctx, `INSERT INTO `+in.t.q+` (topic, uuid, handled_at) VALUES (?, ?, NOW(6))`, topic, uuid)
	var me *gomysql.MySQLError
	if errors.As(err, &me) && me.Number == 1062 { // ER_DUP_ENTRY
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("outbox/mysql: inbox record: %w", err)
	}
	return false, nil
}

// Prune implements outbox.Inbox, deleting in chunks so that no statement
// holds many locks.
func (in *Inbox) Prune(ctx context.Context, keep time.Duration) (int64, error) {
	var total int64
	for {
		res, err := in.db.ExecContext(ctx, `DELETE FROM `+in.t.q+` WHERE handled_at < NOW(6) - INTERVAL ? MICROSECOND LIMIT 5000`, keep.Microseconds())
		if err != nil {
			return total, fmt.Errorf("outbox/mysql: inbox prune: %w", err)
		}
		n, _ := res.RowsAffected()
		total += n
		if n < 5000 {
			return total, nil
		}
	}
}
