package mysql

import (
	"context"
	"fmt"

	"github.com/finalbus/final/outbox"
)

// redeliveriesTable counts the redeliveries of messages consumed from
// queues that do not count them (outbox.RedeliveryCounter), for every
// outbox table in the database.
const redeliveriesTable = "`final_redeliveries`"

var _ outbox.RedeliveryCounter = (*Store)(nil)

func (s *Store) createRedeliveries(ctx context.Context) error {
	_, err := s.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS `+redeliveriesTable+` (
		outbox_table VARCHAR(64) NOT NULL,
		topic        VARBINARY(255) NOT NULL,
		uuid         VARBINARY(256) NOT NULL,
		deliveries   INT NOT NULL,
		last_at      DATETIME(6) NOT NULL,
		PRIMARY KEY (outbox_table, topic, uuid)
	) ENGINE=InnoDB`)
	if err != nil {
		return fmt.Errorf("outbox/mysql: redeliveries table: %w", err)
	}
	return nil
}

// CountRedelivery implements outbox.RedeliveryCounter.
func (s *Store) CountRedelivery(ctx context.Context, topic, uuid string) (int, error) {
	if len(topic) > outbox.MaxTopicLen || len(uuid) > 256 {
		return 0, fmt.Errorf("outbox/mysql: count redelivery: topic or uuid too long")
	}
	// LAST_INSERT_ID(expr) hands the new count back in the statement's
	// result, without a second round trip to read it.
	res, err := s.db.ExecContext(ctx, `INSERT INTO `+redeliveriesTable+` (outbox_table, topic, uuid, deliveries, last_at)
		VALUES (?, ?, ?, LAST_INSERT_ID(1), NOW(6))
		ON DUPLICATE KEY UPDATE deliveries = LAST_INSERT_ID(deliveries + 1), last_at = NOW(6)`, s.t.name, topic, uuid)
	if err != nil {
		return 0, fmt.Errorf("outbox/mysql: count redelivery: %w", err)
	}
	n, err := res.LastInsertId()
	if err != nil {
		return 0, fmt.Errorf("outbox/mysql: count redelivery: %w", err)
	}
	if s.counted.Add(1)%100 == 0 {
		// A count is forgotten when its message is settled, but an ack
		// lost with its connection leaves it behind: counts idle for a
		// day go, now and then.
		_, _ = s.db.ExecContext(ctx, `DELETE FROM `+redeliveriesTable+` WHERE outbox_table = ? AND last_at < NOW(6) - INTERVAL 1 DAY LIMIT 1000`, s.t.name)
	}
	return int(n), nil
}

// ForgetRedeliveries implements outbox.RedeliveryCounter.
func (s *Store) ForgetRedeliveries(ctx context.Context, topic, uuid string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM `+redeliveriesTable+` WHERE outbox_table = ? AND topic = ? AND uuid = ?`,
		s.t.name, topic, uuid); err != nil {
		return fmt.Errorf("outbox/mysql: forget redeliveries: %w", err)
	}
	return nil
}
