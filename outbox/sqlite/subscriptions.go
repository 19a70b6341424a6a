package sqlite

import (
	"context"
	"database/sql"
	"time"

	"github.com/finalbus/final/outbox"
)

// subscriptionsTable records, for every outbox table in the database, what
// each instance of its service declared on the broker
// (outbox.SubscriptionRecorder): one table for all services, as in the
// MySQL store. Topics are BLOBs, compared byte for byte as routing keys
// are; times are unix microseconds from the writer's clock.
const subscriptionsTable = `"final_topology"`

const subscriptionsDDL = `CREATE TABLE IF NOT EXISTS ` + subscriptionsTable + ` (
	outbox_table TEXT NOT NULL,
	owner        BLOB NOT NULL,
	topic        BLOB NOT NULL,
	kind         TEXT NOT NULL,
	refreshed_at INTEGER NOT NULL,
	PRIMARY KEY (outbox_table, owner, topic, kind)
)`

var _ outbox.SubscriptionRecorder = (*Store)(nil)

// Declarations implements outbox.SubscriptionRecorder. Migrate creates the
// table.
func (s *Store) Declarations(ctx context.Context, live time.Duration) ([]outbox.Declaration, error) {
	since := time.Now().Add(-live).UnixMicro()
	rows, err := s.db.QueryContext(ctx, `SELECT owner, topic, kind, refreshed_at > ? FROM `+subscriptionsTable+
		` WHERE outbox_table = ? ORDER BY owner, topic, kind`, since, s.t.name)
	if err != nil {
		return nil, wrapError("read topology", err)
	}
	defer rows.Close()
	var out []outbox.Declaration
	for rows.Next() {
		var (
			d            outbox.Declaration
			owner, topic []byte
		)
		if err := rows.Scan(&owner, &topic, &d.Kind, &d.Live); err != nil {
			return nil, wrapError("read topology", err)
		}
		d.Owner, d.Topic = string(owner), string(topic)
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, wrapError("read topology", err)
	}
	return out, nil
}

// Declare implements outbox.SubscriptionRecorder, in one transaction.
func (s *Store) Declare(ctx context.Context, owner string, subs []outbox.Subscription) error {
	now := time.Now().UnixMicro()
	err := immediate(ctx, s.db, func(c *sql.Conn) error {
		if _, err := c.ExecContext(ctx, `DELETE FROM `+subscriptionsTable+` WHERE outbox_table = ? AND owner = ?`,
			s.t.name, []byte(owner)); err != nil {
			return err
		}
		for _, sub := range subs {
			if _, err := c.ExecContext(ctx, `INSERT OR IGNORE INTO `+subscriptionsTable+` (outbox_table, owner, topic, kind, refreshed_at)
				VALUES (?, ?, ?, ?, ?)`, s.t.name, []byte(owner), []byte(sub.Topic), sub.Kind, now); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return wrapError("write topology", err)
	}
	return nil
}

// Refresh implements outbox.SubscriptionRecorder.
func (s *Store) Refresh(ctx context.Context, owner string) error {
	return s.setRefreshed(ctx, "refresh topology", owner, time.Now().UnixMicro())
}

// Retire implements outbox.SubscriptionRecorder.
func (s *Store) Retire(ctx context.Context, owner string) error {
	return s.setRefreshed(ctx, "retire topology", owner, 0)
}

func (s *Store) setRefreshed(ctx context.Context, op, owner string, at int64) error {
	if _, err := s.db.ExecContext(ctx, `UPDATE `+subscriptionsTable+` SET refreshed_at = ? WHERE outbox_table = ? AND owner = ?`,
		at, s.t.name, []byte(owner)); err != nil {
		return wrapError(op, err)
	}
	return nil
}

// Forget implements outbox.SubscriptionRecorder.
func (s *Store) Forget(ctx context.Context, owners []string) error {
	for _, owner := range owners {
		if _, err := s.db.ExecContext(ctx, `DELETE FROM `+subscriptionsTable+` WHERE outbox_table = ? AND owner = ?`,
			s.t.name, []byte(owner)); err != nil {
			return wrapError("forget topology", err)
		}
	}
	return nil
}
