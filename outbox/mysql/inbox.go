package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	gomysql "github.com/go-sql-driver/mysql"

	"github.com/finalbus/final/outbox"
)

// Inbox is an outbox.Inbox in MariaDB or MySQL: one row per handled message,
// keyed by its UUID.
type Inbox struct {
	db *sql.DB
	t  string // validated, unquoted
	q  string // quoted
}

var _ outbox.Inbox = (*Inbox)(nil)

// NewInbox returns the inbox in table; it fails with
// outbox.ErrInvalidIdentifier when table is not a safe identifier.
func NewInbox(db *sql.DB, table string) (*Inbox, error) {
	if db == nil {
		return nil, errors.New("outbox/mysql: nil *sql.DB")
	}
	q, err := outbox.QuoteIdentifier(table)
	if err != nil {
		return nil, err
	}
	return &Inbox{db: db, t: table, q: q}, nil
}

// Table returns the table name.
func (in *Inbox) Table() string { return in.t }

// Migrate implements outbox.Inbox.
func (in *Inbox) Migrate(ctx context.Context) error {
	_, err := in.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS `+in.q+` (
		uuid       VARCHAR(64) NOT NULL PRIMARY KEY,
		topic      VARCHAR(255) NOT NULL,
		handled_at DATETIME(6) NOT NULL,
		KEY idx_final_handled (handled_at)
	) ENGINE=InnoDB`)
	if err != nil {
		return fmt.Errorf("outbox/mysql: inbox %s: %w", in.t, err)
	}
	return nil
}

// Record implements outbox.Inbox. The unique key does the work: a second
// insert of the same UUID fails with a duplicate-key error once the first
// has committed, and waits on its row lock until then.
func (in *Inbox) Record(ctx context.Context, tx *sql.Tx, uuid, topic string) (bool, error) {
	_, err := tx.ExecContext(ctx, `INSERT INTO `+in.q+` (uuid, topic, handled_at) VALUES (?, ?, NOW(6))`, uuid, topic)
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
		res, err := in.db.ExecContext(ctx, `DELETE FROM `+in.q+` WHERE handled_at < NOW(6) - INTERVAL ? MICROSECOND LIMIT 5000`, keep.Microseconds())
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
