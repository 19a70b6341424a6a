package sqlite

import (
	"context"
	"time"

	"github.com/finalbus/final/outbox"
)

// redeliveriesTable counts the redeliveries of messages consumed from
// queues that do not count them (outbox.RedeliveryCounter), for every
// outbox table in the database. TEXT compares byte for byte (SQLite's
// BINARY collation), as the key must.
const redeliveriesTable = `"final_redeliveries"`

const redeliveriesDDL = `CREATE TABLE IF NOT EXISTS ` + redeliveriesTable + ` (
	outbox_table TEXT NOT NULL,
	topic        TEXT NOT NULL,
	uuid         TEXT NOT NULL,
	deliveries   INTEGER NOT NULL,
	last_at      INTEGER NOT NULL,
	PRIMARY KEY (outbox_table, topic, uuid)
)`

var _ outbox.RedeliveryCounter = (*Store)(nil)

// CountRedelivery implements outbox.RedeliveryCounter: one upsert that
// returns the new count.
func (s *Store) CountRedelivery(ctx context.Context, topic, uuid string) (int, error) {
	now := time.Now().UnixMicro()
	var n int
	err := s.db.QueryRowContext(ctx, `INSERT INTO `+redeliveriesTable+` (outbox_table, topic, uuid, deliveries, last_at)
		VALUES (?, ?, ?, 1, ?)
		ON CONFLICT (outbox_table, topic, uuid) DO UPDATE SET deliveries = deliveries + 1, last_at = excluded.last_at
		RETURNING deliveries`, s.t.name, topic, uuid, now).Scan(&n)
	if err != nil {
		return 0, wrapError("count redelivery", err)
	}
	if s.counted.Add(1)%100 == 0 {
		// A count is forgotten when its message is settled, but an ack
		// lost with its connection leaves it behind: counts idle for a
		// day go, now and then.
		_, _ = s.db.ExecContext(ctx, `DELETE FROM `+redeliveriesTable+` WHERE rowid IN (
			SELECT rowid FROM `+redeliveriesTable+` WHERE outbox_table = ? AND last_at < ? LIMIT 1000)`,
			s.t.name, now-(24*time.Hour).Microseconds())
	}
	return n, nil
}

// ForgetRedeliveries implements outbox.RedeliveryCounter.
func (s *Store) ForgetRedeliveries(ctx context.Context, topic, uuid string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM `+redeliveriesTable+` WHERE outbox_table = ? AND topic = ? AND uuid = ?`,
		s.t.name, topic, uuid); err != nil {
		return wrapError("forget redeliveries", err)
	}
	return nil
}
