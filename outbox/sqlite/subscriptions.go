package sqlite

import (
	"context"
	"database/sql"

	"github.com/finalbus/final/outbox"
)

// subscriptionsTable records, for every outbox table in the database, what
// its service declared on the broker (outbox.SubscriptionRecorder): one
// table for all services, as in the MySQL store.
const subscriptionsTable = `"final_subscriptions"`

const subscriptionsDDL = `CREATE TABLE IF NOT EXISTS ` + subscriptionsTable + ` (
	outbox_table TEXT NOT NULL,
	topic        TEXT NOT NULL,
	kind         TEXT NOT NULL,
	PRIMARY KEY (outbox_table, topic, kind)
)`

var _ outbox.SubscriptionRecorder = (*Store)(nil)

// Subscriptions implements outbox.SubscriptionRecorder. Migrate creates
// the table.
func (s *Store) Subscriptions(ctx context.Context) ([]outbox.Subscription, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT topic, kind FROM `+subscriptionsTable+
		` WHERE outbox_table = ? ORDER BY topic, kind`, s.t.name)
	if err != nil {
		return nil, wrapError("read subscriptions", err)
	}
	defer rows.Close()
	var out []outbox.Subscription
	for rows.Next() {
		var sub outbox.Subscription
		if err := rows.Scan(&sub.Topic, &sub.Kind); err != nil {
			return nil, wrapError("read subscriptions", err)
		}
		out = append(out, sub)
	}
	if err := rows.Err(); err != nil {
		return nil, wrapError("read subscriptions", err)
	}
	return out, nil
}

// SetSubscriptions implements outbox.SubscriptionRecorder, in one
// transaction.
func (s *Store) SetSubscriptions(ctx context.Context, subs []outbox.Subscription) error {
	err := immediate(ctx, s.db, func(c *sql.Conn) error {
		if _, err := c.ExecContext(ctx, `DELETE FROM `+subscriptionsTable+` WHERE outbox_table = ?`, s.t.name); err != nil {
			return err
		}
		for _, sub := range subs {
			if _, err := c.ExecContext(ctx, `INSERT OR IGNORE INTO `+subscriptionsTable+` (outbox_table, topic, kind) VALUES (?, ?, ?)`,
				s.t.name, sub.Topic, sub.Kind); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return wrapError("write subscriptions", err)
	}
	return nil
}
