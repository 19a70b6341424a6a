package mysql

import (
	"context"
	"errors"
	"fmt"
	"time"

	gomysql "github.com/go-sql-driver/mysql"

	"github.com/finalbus/final/outbox"
)

// declarationsTable records, for every outbox table in the database, what
// each instance of its service declared on the broker
// (outbox.SubscriptionRecorder). One table for all services, like the
// migrations table: a per-service name would not fit MySQL's 64 characters
// for the longest service names. Topics compare byte for byte, as routing
// keys do.
const declarationsTable = "`final_topology`"

var _ outbox.SubscriptionRecorder = (*Store)(nil)

func (s *Store) createDeclarations(ctx context.Context) error {
	_, err := s.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS `+declarationsTable+` (
		outbox_table VARCHAR(64) NOT NULL,
		owner        VARBINARY(128) NOT NULL,
		topic        VARBINARY(255) NOT NULL,
		kind         VARCHAR(16) NOT NULL,
		refreshed_at DATETIME(6) NOT NULL,
		PRIMARY KEY (outbox_table, owner, topic, kind)
	) ENGINE=InnoDB`)
	if err != nil {
		return fmt.Errorf("outbox/mysql: topology table: %w", err)
	}
	return nil
}

// Declarations implements outbox.SubscriptionRecorder. Migrate creates the
// table.
func (s *Store) Declarations(ctx context.Context, live time.Duration) ([]outbox.Declaration, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT owner, topic, kind, refreshed_at > NOW(6) - INTERVAL ? MICROSECOND FROM `+
		declarationsTable+` WHERE outbox_table = ? ORDER BY owner, topic, kind`, live.Microseconds(), s.t.name)
	if err != nil {
		return nil, fmt.Errorf("outbox/mysql: read topology: %w", err)
	}
	defer rows.Close()
	var out []outbox.Declaration
	for rows.Next() {
		var d outbox.Declaration
		if err := rows.Scan(&d.Owner, &d.Topic, &d.Kind, &d.Live); err != nil {
			return nil, fmt.Errorf("outbox/mysql: read topology: %w", err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("outbox/mysql: read topology: %w", err)
	}
	return out, nil
}

// Declare implements outbox.SubscriptionRecorder, in one transaction. Two
// instances starting together can deadlock on the index gap they both
// write; the loser is retried.
func (s *Store) Declare(ctx context.Context, owner string, subs []outbox.Subscription) error {
	for attempt := 0; ; attempt++ {
		err := s.declare(ctx, owner, subs)
		var me *gomysql.MySQLError
		if attempt < 5 && errors.As(err, &me) && (me.Number == 1213 || me.Number == 1205) {
			continue
		}
		return err
	}
}

func (s *Store) declare(ctx context.Context, owner string, subs []outbox.Subscription) (err error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("outbox/mysql: write topology: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	if _, err = tx.ExecContext(ctx, `DELETE FROM `+declarationsTable+` WHERE outbox_table = ? AND owner = ?`, s.t.name, owner); err != nil {
		return fmt.Errorf("outbox/mysql: write topology: %w", err)
	}
	for _, sub := range subs {
		if _, err = tx.ExecContext(ctx, `INSERT IGNORE INTO `+declarationsTable+` (outbox_table, owner, topic, kind, refreshed_at)
			VALUES (?, ?, ?, ?, NOW(6))`, s.t.name, owner, sub.Topic, sub.Kind); err != nil {
			return fmt.Errorf("outbox/mysql: write topology: %w", err)
		}
	}
	if err = tx.Commit(); err != nil {
		return fmt.Errorf("outbox/mysql: write topology: %w", err)
	}
	return nil
}

// Refresh implements outbox.SubscriptionRecorder.
func (s *Store) Refresh(ctx context.Context, owner string) error {
	if _, err := s.db.ExecContext(ctx, `UPDATE `+declarationsTable+` SET refreshed_at = NOW(6) WHERE outbox_table = ? AND owner = ?`,
		s.t.name, owner); err != nil {
		return fmt.Errorf("outbox/mysql: refresh topology: %w", err)
	}
	return nil
}

// Retire implements outbox.SubscriptionRecorder.
func (s *Store) Retire(ctx context.Context, owner string) error {
	if _, err := s.db.ExecContext(ctx, `UPDATE `+declarationsTable+` SET refreshed_at = '1970-01-02 00:00:00' WHERE outbox_table = ? AND owner = ?`,
		s.t.name, owner); err != nil {
		return fmt.Errorf("outbox/mysql: retire topology: %w", err)
	}
	return nil
}

// Forget implements outbox.SubscriptionRecorder.
func (s *Store) Forget(ctx context.Context, owners []string) error {
	for _, owner := range owners {
		if _, err := s.db.ExecContext(ctx, `DELETE FROM `+declarationsTable+` WHERE outbox_table = ? AND owner = ?`,
			s.t.name, owner); err != nil {
			return fmt.Errorf("outbox/mysql: forget topology: %w", err)
		}
	}
	return nil
}
