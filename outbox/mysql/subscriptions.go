package mysql

import (
	"context"
	"fmt"

	"github.com/finalbus/final/outbox"
)

// subscriptionsTable records, for every outbox table in the database, what
// its service declared on the broker (outbox.SubscriptionRecorder). One
// table for all services, like the migrations table: a per-service name
// would not fit MySQL's 64 characters for the longest service names.
const subscriptionsTable = "`final_subscriptions`"

var _ outbox.SubscriptionRecorder = (*Store)(nil)

func (s *Store) createSubscriptions(ctx context.Context) error {
	_, err := s.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS `+subscriptionsTable+` (
		outbox_table VARCHAR(64) NOT NULL,
		topic        VARCHAR(255) NOT NULL,
		kind         VARCHAR(16) NOT NULL,
		PRIMARY KEY (outbox_table, topic, kind)
	) ENGINE=InnoDB`)
	if err != nil {
		return fmt.Errorf("outbox/mysql: subscriptions table: %w", err)
	}
	return nil
}

// Subscriptions implements outbox.SubscriptionRecorder. Migrate creates
// the table.
func (s *Store) Subscriptions(ctx context.Context) ([]outbox.Subscription, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT topic, kind FROM `+subscriptionsTable+
		` WHERE outbox_table = ? ORDER BY topic, kind`, s.t.name)
	if err != nil {
		return nil, fmt.Errorf("outbox/mysql: read subscriptions: %w", err)
	}
	defer rows.Close()
	var out []outbox.Subscription
	for rows.Next() {
		var sub outbox.Subscription
		if err := rows.Scan(&sub.Topic, &sub.Kind); err != nil {
			return nil, fmt.Errorf("outbox/mysql: read subscriptions: %w", err)
		}
		out = append(out, sub)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("outbox/mysql: read subscriptions: %w", err)
	}
	return out, nil
}

// SetSubscriptions implements outbox.SubscriptionRecorder, in one
// transaction.
func (s *Store) SetSubscriptions(ctx context.Context, subs []outbox.Subscription) (err error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("outbox/mysql: write subscriptions: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	if _, err = tx.ExecContext(ctx, `DELETE FROM `+subscriptionsTable+` WHERE outbox_table = ?`, s.t.name); err != nil {
		return fmt.Errorf("outbox/mysql: write subscriptions: %w", err)
	}
	for _, sub := range subs {
		if _, err = tx.ExecContext(ctx, `INSERT IGNORE INTO `+subscriptionsTable+` (outbox_table, topic, kind) VALUES (?, ?, ?)`,
			s.t.name, sub.Topic, sub.Kind); err != nil {
			return fmt.Errorf("outbox/mysql: write subscriptions: %w", err)
		}
	}
	if err = tx.Commit(); err != nil {
		return fmt.Errorf("outbox/mysql: write subscriptions: %w", err)
	}
	return nil
}
