package mysql

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// A migration moves a table from version-1 to version. Each step checks
// the catalog before it changes anything, so a step interrupted half way
// (MySQL DDL is not transactional) is completed on the next start.
type migration struct {
	version int
	name    string
	apply   func(ctx context.Context, conn *sql.Conn, t table) error
}

// migrations of the outbox table, in order. Version 1 is the ancestor
// library's table, so a table it created is picked up as version 1 and
// upgraded in place.
var migrations = []migration{
	{1, "create outbox table", func(ctx context.Context, c *sql.Conn, t table) error {
		_, err := c.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS `+t.q+` (
			id           BIGINT AUTO_INCREMENT PRIMARY KEY,
			message      LONGBLOB NULL,
			status       BIGINT NULL,
			create_at    DATETIME(3) NULL,
			last_send_at DATETIME(3) NULL
		) ENGINE=InnoDB`)
		return err
	}},
	{2, "relay columns and scan index", func(ctx context.Context, c *sql.Conn, t table) error {
		columns := []struct{ name, ddl string }{
			// Existing rows become available at once.
			{"available_at", "DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)"},
			{"attempts", "INT NOT NULL DEFAULT 0"},
			{"last_error", "VARCHAR(1024) NULL"},
			{"claimed_by", "VARCHAR(64) NULL"},
		}
		for _, col := range columns {
			ok, err := t.hasColumn(ctx, c, col.name)
			if err != nil {
				return err
			}
			if !ok {
				if _, err := c.ExecContext(ctx, `ALTER TABLE `+t.q+` ADD COLUMN `+col.name+` `+col.ddl); err != nil {
					return err
				}
			}
		}
		ok, err := t.hasIndex(ctx, c, "idx_final_available")
		if err != nil || ok {
			return err
		}
		_, err = c.ExecContext(ctx, `ALTER TABLE `+t.q+` ADD INDEX idx_final_available (available_at, id)`)
		return err
	}},
	{3, "order key column and index", func(ctx context.Context, c *sql.Conn, t table) error {
		// Existing rows have no key: they are not ordered.
		ok, err := t.hasColumn(ctx, c, "order_key")
		if err != nil {
			return err
		}
		if !ok {
			if _, err := c.ExecContext(ctx, `ALTER TABLE `+t.q+` ADD COLUMN order_key BIGINT NULL`); err != nil {
				return err
			}
		}
		// It serves the claim's walk through a key's rows in id order. It
		// leaves out available_at, which every lease and failure rewrites.
		ok, err = t.hasIndex(ctx, c, "idx_final_order_id")
		if err != nil || ok {
			return err
		}
		_, err = c.ExecContext(ctx, `ALTER TABLE `+t.q+` ADD INDEX idx_final_order_id (order_key, id)`)
		return err
	}},
}

// SchemaVersion is the version Migrate brings an outbox table to.
func SchemaVersion() int { return migrations[len(migrations)-1].version }

// versionTable records the applied migrations of every outbox and inbox
// table in the database.
const versionTable = "`final_schema_migrations`"

// Migrate implements outbox.Store. Concurrent starters are serialised by a
// named lock, so a fleet can start at once.
func (s *Store) Migrate(ctx context.Context) error {
	if err := migrate(ctx, s.db, s.t, migrations); err != nil {
		return err
	}
	// Tables shared by every service, created once for all.
	if err := s.createDeclarations(ctx); err != nil {
		return err
	}
	if err := s.createRedeliveries(ctx); err != nil {
		return err
	}
	return s.prepare(ctx)
}

// migrate brings t up to the last of steps, under t's migration lock.
func migrate(ctx context.Context, db *sql.DB, t table, steps []migration) error {
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("outbox/mysql: migrate: %w", err)
	}
	defer conn.Close()

	lock := lockName(t.name)
	var got sql.NullInt64
	if err := conn.QueryRowContext(ctx, `SELECT GET_LOCK(?, ?)`, lock, 30).Scan(&got); err != nil {
		return fmt.Errorf("outbox/mysql: migrate lock: %w", err)
	}
	if !got.Valid || got.Int64 != 1 {
		return fmt.Errorf("outbox/mysql: migrate: could not take lock %q within 30s", lock)
	}
	defer conn.ExecContext(context.Background(), `SELECT RELEASE_LOCK(?)`, lock) //nolint:errcheck // closing the connection releases it too

	if _, err := conn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS `+versionTable+` (
		table_name VARCHAR(64) NOT NULL,
		version    INT NOT NULL,
		name       VARCHAR(255) NOT NULL,
		applied_at DATETIME(3) NOT NULL,
		PRIMARY KEY (table_name, version)
	) ENGINE=InnoDB`); err != nil {
		return fmt.Errorf("outbox/mysql: migrate: %w", err)
	}
	// A table dropped by hand starts again from version 0.
	if exists, err := t.exists(ctx, conn); err != nil {
		return fmt.Errorf("outbox/mysql: migrate: %w", err)
	} else if !exists {
		if _, err := conn.ExecContext(ctx, `DELETE FROM `+versionTable+` WHERE table_name = ?`, t.name); err != nil {
			return fmt.Errorf("outbox/mysql: migrate: %w", err)
		}
	}
	var current int
	if err := conn.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM `+versionTable+` WHERE table_name = ?`,
		t.name).Scan(&current); err != nil {
		return fmt.Errorf("outbox/mysql: migrate: %w", err)
	}
	for _, m := range steps {
		if m.version <= current {
			continue
		}
		if err := m.apply(ctx, conn, t); err != nil {
			return fmt.Errorf("outbox/mysql: migration %d (%s) of %s: %w", m.version, m.name, t.name, err)
		}
		if _, err := conn.ExecContext(ctx, `INSERT INTO `+versionTable+` (table_name, version, name, applied_at) VALUES (?, ?, ?, ?)`,
			t.name, m.version, m.name, time.Now().UTC()); err != nil {
			return fmt.Errorf("outbox/mysql: record migration %d: %w", m.version, err)
		}
	}
	return nil
}

func (t table) exists(ctx context.Context, c *sql.Conn) (bool, error) {
	var n int
	err := c.QueryRowContext(ctx, `SELECT COUNT(*) FROM information_schema.TABLES
		WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?`, t.name).Scan(&n)
	return n > 0, err
}

func (t table) hasColumn(ctx context.Context, c *sql.Conn, column string) (bool, error) {
	var n int
	err := c.QueryRowContext(ctx, `SELECT COUNT(*) FROM information_schema.COLUMNS
		WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND COLUMN_NAME = ?`, t.name, column).Scan(&n)
	return n > 0, err
}

func (t table) hasIndex(ctx context.Context, c *sql.Conn, index string) (bool, error) {
	var n int
	err := c.QueryRowContext(ctx, `SELECT COUNT(*) FROM information_schema.STATISTICS
		WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND INDEX_NAME = ?`, t.name, index).Scan(&n)
	return n > 0, err
}

// indexColumns returns the columns of index in their order in it, none
// when the table has no such index.
func (t table) indexColumns(ctx context.Context, c *sql.Conn, index string) ([]string, error) {
	rows, err := c.QueryContext(ctx, `SELECT COLUMN_NAME FROM information_schema.STATISTICS
		WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? AND INDEX_NAME = ? ORDER BY SEQ_IN_INDEX`, t.name, index)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var cols []string
	for rows.Next() {
		var col string
		if err := rows.Scan(&col); err != nil {
			return nil, err
		}
		cols = append(cols, col)
	}
	return cols, rows.Err()
}
