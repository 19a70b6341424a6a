package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/finalbus/final/outbox"
)

// subscriptionsTable records, for every outbox table in the database, what
// each instance of its service declared on the broker
// (outbox.SubscriptionRecorder). One table for all services, like the
// migrations table. Topics are BYTEA: they compare byte for byte, as
// routing keys do.
const subscriptionsTable = `"final_topology"`

const createSubscriptions = `CREATE TABLE IF NOT EXISTS ` + subscriptionsTable + ` (
	outbox_table TEXT NOT NULL,
	owner        BYTEA NOT NULL,
	topic        BYTEA NOT NULL,
	kind         TEXT NOT NULL,
	refreshed_at TIMESTAMPTZ NOT NULL,
	PRIMARY KEY (outbox_table, owner, topic, kind)
)`

var _ outbox.SubscriptionRecorder = (*Store)(nil)

// Declarations implements outbox.SubscriptionRecorder. Migrate creates the
// table.
func (s *Store) Declarations(ctx context.Context, live time.Duration) ([]outbox.Declaration, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT owner, topic, kind, refreshed_at > clock_timestamp() - $1 * interval '1 microsecond'
		FROM `+subscriptionsTable+` WHERE outbox_table = $2 ORDER BY owner, topic, kind`, live.Microseconds(), s.t.name)
	if err != nil {
		return nil, fmt.Errorf("outbox/postgres: read topology: %w", err)
	}
	defer rows.Close()
	var out []outbox.Declaration
	for rows.Next() {
		var (
			d            outbox.Declaration
			owner, topic []byte
		)
		if err := rows.Scan(&owner, &topic, &d.Kind, &d.Live); err != nil {
			return nil, fmt.Errorf("outbox/postgres: read topology: %w", err)
		}
		d.Owner, d.Topic = string(owner), string(topic)
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("outbox/postgres: read topology: %w", err)
	}
	return out, nil
}

// Declare implements outbox.SubscriptionRecorder, in one transaction.
func (s *Store) Declare(ctx context.Context, owner string, subs []outbox.Subscription) (err error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("outbox/postgres: write topology: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	if _, err = tx.ExecContext(ctx, `DELETE FROM `+subscriptionsTable+` WHERE outbox_table = $1 AND owner = $2`,
		s.t.name, []byte(owner)); err != nil {
		return fmt.Errorf("outbox/postgres: write topology: %w", err)
	}
	for _, sub := range subs {
		// A subscription listed twice is recorded once.
		if _, err = tx.ExecContext(ctx, `INSERT INTO `+subscriptionsTable+` (outbox_table, owner, topic, kind, refreshed_at)
			VALUES ($1, $2, $3, $4, clock_timestamp()) ON CONFLICT DO NOTHING`,
			s.t.name, []byte(owner), []byte(sub.Topic), sub.Kind); err != nil {
			return fmt.Errorf("outbox/postgres: write topology: %w", err)
		}
	}
	if err = tx.Commit(); err != nil {
		return fmt.Errorf("outbox/postgres: write topology: %w", err)
	}
	return nil
}

// Refresh implements outbox.SubscriptionRecorder.
func (s *Store) Refresh(ctx context.Context, owner string) error {
	if _, err := s.db.ExecContext(ctx, `UPDATE `+subscriptionsTable+` SET refreshed_at = clock_timestamp()
		WHERE outbox_table = $1 AND owner = $2`, s.t.name, []byte(owner)); err != nil {
		return fmt.Errorf("outbox/postgres: refresh topology: %w", err)
	}
	return nil
}

// Retire implements outbox.SubscriptionRecorder.
func (s *Store) Retire(ctx context.Context, owner string) error {
	if _, err := s.db.ExecContext(ctx, `UPDATE `+subscriptionsTable+` SET refreshed_at = 'epoch'
		WHERE outbox_table = $1 AND owner = $2`, s.t.name, []byte(owner)); err != nil {
		return fmt.Errorf("outbox/postgres: retire topology: %w", err)
	}
	return nil
}

// Forget implements outbox.SubscriptionRecorder.
func (s *Store) Forget(ctx context.Context, owners []string) error {
	for _, owner := range owners {
		if _, err := s.db.ExecContext(ctx, `DELETE FROM `+subscriptionsTable+` WHERE outbox_table = $1 AND owner = $2`,
			s.t.name, []byte(owner)); err != nil {
			return fmt.Errorf("outbox/postgres: forget topology: %w", err)
		}
	}
	return nil
}
