package postgres

import (
	"context"
	"fmt"

	"github.com/finalbus/final/outbox"
)

// redeliveriesTable counts the redeliveries of messages consumed from
// queues that do not count them (outbox.RedeliveryCounter), for every
// outbox table in the database. Topic and UUID are BYTEA: compared byte
// for byte, and any bytes fit.
const redeliveriesTable = `"final_redeliveries"`

const createRedeliveries = `CREATE TABLE IF NOT EXISTS ` + redeliveriesTable + ` (
	outbox_table TEXT NOT NULL,
	topic        BYTEA NOT NULL,
	uuid         BYTEA NOT NULL,
	deliveries   INT NOT NULL,
	last_at      TIMESTAMPTZ NOT NULL,
	PRIMARY KEY (outbox_table, topic, uuid)
)`

// Longest topic and UUID a count is kept for, as in outbox/mysql.
const (
	maxKeyTopic = outbox.MaxTopicLen
	maxKeyUUID  = 256
)

var _ outbox.RedeliveryCounter = (*Store)(nil)

// CountRedelivery implements outbox.RedeliveryCounter: one statement
// adds one or creates the count, and returns the new count.
func (s *Store) CountRedelivery(ctx context.Context, topic, uuid string) (int, error) {
	if len(topic) > maxKeyTopic || len(uuid) > maxKeyUUID {
		return 0, fmt.Errorf("outbox/postgres: count redelivery: topic of %d bytes or uuid of %d exceeds %d, %d",
			len(topic), len(uuid), maxKeyTopic, maxKeyUUID)
	}
	var n int
	err := s.db.QueryRowContext(ctx, `INSERT INTO `+redeliveriesTable+` AS r (outbox_table, topic, uuid, deliveries, last_at)
		VALUES ($1, $2, $3, 1, clock_timestamp())
		ON CONFLICT (outbox_table, topic, uuid) DO UPDATE SET deliveries = r.deliveries + 1, last_at = EXCLUDED.last_at
		RETURNING deliveries`, s.t.name, []byte(topic), []byte(uuid)).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("outbox/postgres: count redelivery: %w", err)
	}
	if s.counted.Add(1)%100 == 0 {
		// A count is forgotten when its message is settled, but an ack
		// lost with its connection leaves it behind: counts idle for a
		// day go, now and then, a thousand at a time.
		_, _ = s.db.ExecContext(ctx, `DELETE FROM `+redeliveriesTable+` WHERE (outbox_table, topic, uuid) IN (
			SELECT outbox_table, topic, uuid FROM `+redeliveriesTable+`
			WHERE outbox_table = $1 AND last_at < clock_timestamp() - interval '1 day' LIMIT 1000)`, s.t.name)
	}
	return n, nil
}

// ForgetRedeliveries implements outbox.RedeliveryCounter.
func (s *Store) ForgetRedeliveries(ctx context.Context, topic, uuid string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM `+redeliveriesTable+` WHERE outbox_table = $1 AND topic = $2 AND uuid = $3`,
		s.t.name, []byte(topic), []byte(uuid)); err != nil {
		return fmt.Errorf("outbox/postgres: forget redeliveries: %w", err)
	}
	return nil
}
