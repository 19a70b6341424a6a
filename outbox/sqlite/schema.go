package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// A migration moves a table from version-1 to version. SQLite's DDL is
// transactional: Migrate applies the steps and records them in one
// transaction, so a step is done whole or not at all.
type migration struct {
	version int
	name    string
	apply   func(ctx context.Context, c *sql.Conn, t table) error
}

// migrations of the outbox table, in order.
//
// Times are unix microseconds. AUTOINCREMENT keeps SQLite from handing the
// id of a deleted row to a new one, which it otherwise does for the
// highest id: a late Delete or Remaining of the old row's id would then
// touch the new row.
var migrations = []migration{
	{1, "create outbox table", func(ctx context.Context, c *sql.Conn, t table) error {
		return execAll(ctx, c,
			`CREATE TABLE `+t.q+` (
				id           INTEGER PRIMARY KEY AUTOINCREMENT,
				message      BLOB,
				create_at    INTEGER NOT NULL,
				available_at INTEGER NOT NULL,
				attempts     INTEGER NOT NULL DEFAULT 0,
				last_error   TEXT,
				claimed_by   TEXT,
				last_send_at INTEGER,
				order_key    INTEGER
			)`,
			// The relay's scan, first available first.
			`CREATE INDEX `+t.index("final_available")+` ON `+t.q+` (available_at, id)`,
			// The claim's walk through a key's rows in id order; it leaves
			// out available_at, which every lease and failure rewrites.
			`CREATE INDEX `+t.index("final_order_id")+` ON `+t.q+` (order_key, id)`)
	}},
}

// SchemaVersion is the version Migrate brings an outbox table to.
func SchemaVersion() int { return migrations[len(migrations)-1].version }

// versionTable records the applied migrations of every outbox and inbox
// table in the database.
const versionTable = `"final_schema_migrations"`

// minVersion is the oldest SQLite this package runs on: 3.35.0 brought
// RETURNING.
var minVersion = [3]int{3, 35, 0}

// Migrate implements outbox.Store. It first checks the database (see the
// package documentation). Concurrent migrators, in this process or in
// others, are serialised by SQLite's write lock.
func (s *Store) Migrate(ctx context.Context) error {
	return migrate(ctx, s.db, s.t, migrations, func(c *sql.Conn) error {
		// Tables shared by every service, created once for all.
		return execAll(ctx, c, subscriptionsDDL, redeliveriesDDL)
	})
}

// migrate checks the database and brings t up to the last of steps, then
// runs extra in the same transaction.
func migrate(ctx context.Context, db *sql.DB, t table, steps []migration, extra func(c *sql.Conn) error) error {
	if err := check(ctx, db); err != nil {
		return err
	}
	err := immediate(ctx, db, func(c *sql.Conn) error {
		if _, err := c.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS `+versionTable+` (
			table_name TEXT NOT NULL,
			version    INTEGER NOT NULL,
			name       TEXT NOT NULL,
			applied_at INTEGER NOT NULL,
			PRIMARY KEY (table_name, version)
		)`); err != nil {
			return err
		}
		// A table dropped by hand starts again from version 0.
		var n int
		if err := c.QueryRowContext(ctx, `SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?`,
			t.name).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			if _, err := c.ExecContext(ctx, `DELETE FROM `+versionTable+` WHERE table_name = ?`, t.name); err != nil {
				return err
			}
		}
		var current int
		if err := c.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM `+versionTable+` WHERE table_name = ?`,
			t.name).Scan(&current); err != nil {
			return err
		}
		for _, m := range steps {
			if m.version <= current {
				continue
			}
			if err := m.apply(ctx, c, t); err != nil {
				return fmt.Errorf("migration %d (%s) of %s: %w", m.version, m.name, t.name, err)
			}
			if _, err := c.ExecContext(ctx, `INSERT INTO `+versionTable+` (table_name, version, name, applied_at) VALUES (?, ?, ?, ?)`,
				t.name, m.version, m.name, time.Now().UnixMicro()); err != nil {
				return fmt.Errorf("record migration %d: %w", m.version, err)
			}
		}
		if extra != nil {
			return extra(c)
		}
		return nil
	})
	if err != nil {
		return wrapError("migrate", err)
	}
	return nil
}

// check refuses a database this package cannot work on safely: an SQLite
// older than minVersion, a journal mode other than WAL (readers would
// block the writer, and an in-memory database is not shared between the
// pool's connections), or no busy timeout (a writer would fail with
// SQLITE_BUSY at once instead of waiting its turn). It looks at one
// connection of the pool; the others were opened from the same DSN.
func check(ctx context.Context, db *sql.DB) error {
	c, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("outbox/sqlite: migrate: %w", err)
	}
	defer c.Close()
	var version, mode string
	var busy int
	if err := c.QueryRowContext(ctx, `SELECT sqlite_version()`).Scan(&version); err != nil {
		return fmt.Errorf("outbox/sqlite: migrate: %w", err)
	}
	if !atLeast(version, minVersion) {
		return fmt.Errorf("%w: %s, want 3.35.0 or later (for RETURNING)", ErrVersion, version)
	}
	if err := c.QueryRowContext(ctx, `PRAGMA journal_mode`).Scan(&mode); err != nil {
		return fmt.Errorf("outbox/sqlite: migrate: %w", err)
	}
	if err := c.QueryRowContext(ctx, `PRAGMA busy_timeout`).Scan(&busy); err != nil {
		return fmt.Errorf("outbox/sqlite: migrate: %w", err)
	}
	var wrong []string
	if !strings.EqualFold(mode, "wal") {
		wrong = append(wrong, fmt.Sprintf("journal_mode is %q, want wal", mode))
	}
	if busy <= 0 {
		wrong = append(wrong, fmt.Sprintf("busy_timeout is %d, want more than 0", busy))
	}
	if len(wrong) > 0 {
		return fmt.Errorf("%w: %s; open a database file with %q in the DSN "+
			"(modernc.org/sqlite and github.com/ncruces/go-sqlite3 alike; busy_timeout first)",
			ErrSetup, strings.Join(wrong, ", "), DSNParams)
	}
	return nil
}

// DSNParams is what a DSN needs for this package, for both drivers: a
// busy timeout of 10s and WAL mode, for example
// "file:app.db?"+DSNParams.
const DSNParams = "_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)"

// atLeast reports whether the dotted version is min or later.
func atLeast(version string, min [3]int) bool {
	parts := strings.SplitN(version, ".", 4)
	for i := range min {
		n := 0
		if i < len(parts) {
			var err error
			if n, err = strconv.Atoi(parts[i]); err != nil {
				return false
			}
		}
		if n != min[i] {
			return n > min[i]
		}
	}
	return true
}

// execAll runs statements in order on c.
func execAll(ctx context.Context, c *sql.Conn, statements ...string) error {
	for _, q := range statements {
		if _, err := c.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	return nil
}
