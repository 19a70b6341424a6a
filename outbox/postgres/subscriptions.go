package postgres

import (
	"context"
	"fmt"

	"github.com/finalbus/final/outbox"
)

// subscriptionsTable records, for every outbox table in the database, what
// its service declared on the broker (outbox.SubscriptionRecorder). One
// table for all services, like the migrations table.
const subscriptionsTable = `"final_subscriptions"`

const createSubscriptions = `CREATE TABLE IF NOT EXISTS ` + subscriptionsTable + ` (
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
		` WHERE outbox_table = $1 ORDER BY topic, kind`, s.t.name)
	if err != nil {
		return nil, fmt.Errorf("outbox/postgres: read subscriptions: %w", err)
	}
	defer rows.Close()
	var out []outbox.Subscription
	for rows.Next() {
		var sub outbox.Subscription
		if err := rows.Scan(&sub.Topic, &sub.Kind); err != nil {
			return nil, fmt.Errorf("outbox/postgres: read subscriptions: %w", err)
		}
		out = append(out, sub)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("outbox/postgres: read subscriptions: %w", err)
	}
	return out, nil
}

// SetSubscriptions implements outbox.SubscriptionRecorder, in one
// transaction.
func (s *Store) SetSubscriptions(ctx context.Context, subs []outbox.Subscription) (err error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("outbox/postgres: write subscriptions: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	if _, err = tx.ExecContext(ctx, `DELETE FROM `+subscriptionsTable+` WHERE outbox_table = $1`, s.t.name); err != nil {
		return fmt.Errorf("outbox/postgres: write subscriptions: %w", err)
	}
	for _, sub := range subs {
		// A subscription listed twice is recorded once.
		if _, err = tx.ExecContext(ctx, `INSERT INTO `+subscriptionsTable+` (outbox_table, topic, kind) VALUES ($1, $2, $3)
			ON CONFLICT DO NOTHING`, s.t.name, sub.Topic, sub.Kind); err != nil {
			return fmt.Errorf("outbox/postgres: write subscriptions: %w", err)
		}
	}
	if err = tx.Commit(); err != nil {
		return fmt.Errorf("outbox/postgres: write subscriptions: %w", err)
	}
	return nil
}
