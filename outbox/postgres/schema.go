package postgres

import (
	"context"
	"database/sql"
	"fmt"
)

// A migration moves a table from version-1 to version, inside the
// transaction that records it: PostgreSQL's DDL is transactional, so a
// step is done whole or not at all.
type migration struct {
	version int
	name    string
	apply   func(ctx context.Context, tx *sql.Tx, t table) error
}

// migrations of the outbox table, in order. The ancestor library never ran
// on PostgreSQL, so version 1 is the whole current table; later versions
// change it in place.
var migrations = []migration{
	{1, "create outbox table", func(ctx context.Context, tx *sql.Tx, t table) error {
		compression, err := messageCompression(ctx, tx)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS `+t.q+` (
			id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
			message      BYTEA `+compression+` NULL,
			create_at    TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
			last_send_at TIMESTAMPTZ NULL,
			available_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
			attempts     INT NOT NULL DEFAULT 0,
			last_error   TEXT NULL,
			claimed_by   TEXT NULL,
			order_key    BIGINT NULL
		)`)
		if err != nil {
			return err
		}
		// The relay's scan, first available first.
		if _, err := tx.ExecContext(ctx, `CREATE INDEX IF NOT EXISTS `+quote(derivedName(t.name, "available"))+
			` ON `+t.q+` (available_at, id)`); err != nil {
			return err
		}
		// The claim's walk through a key's rows in id order. It leaves out
		// available_at, which every lease and failure rewrites, and the
		// rows without a key.
		_, err = tx.ExecContext(ctx, `CREATE INDEX IF NOT EXISTS `+quote(derivedName(t.name, "order_id"))+
			` ON `+t.q+` (order_key, id) WHERE order_key IS NOT NULL`)
		return err
	}},
}

// messageCompression returns the clause that has a new outbox table store
// its messages compressed with lz4, where the server has it (PostgreSQL 14
// and later, built with lz4), or "" to leave the server's default.
// PostgreSQL compresses a value of more than about 2 KB when it stores it,
// with pglz unless told otherwise: a 64 KiB message's insert took 225–320
// µs with pglz against 10 µs with lz4, inside the producer's transaction
// (docs/performance.md, "Levers weighed"). A table that exists is left as
// it is: changing it is an ALTER TABLE, which would need its owner and its
// exclusive lock at an upgrade (docs/databases.md says how to do it by hand).
func messageCompression(ctx context.Context, tx *sql.Tx) (string, error) {
	var lz4 bool
	if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT FROM pg_settings
		WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals))`).Scan(&lz4); err != nil {
		return "", err
	}
	if !lz4 {
		return "", nil
	}
	return "COMPRESSION lz4", nil
}

// SchemaVersion is the version Migrate brings an outbox table to.
func SchemaVersion() int { return migrations[len(migrations)-1].version }

// Tables shared by every outbox and inbox table of the database.
const (
	// versionTable records the applied migrations of each table.
	versionTable = `"final_schema_migrations"`
	// sharedLock serialises the creation of the shared tables: concurrent
	// CREATE TABLE IF NOT EXISTS of one name can fail on the catalog's
	// unique index instead of waiting.
	sharedLock = "final shared tables"
)

const createVersionTable = `CREATE TABLE IF NOT EXISTS ` + versionTable + ` (
	table_name TEXT NOT NULL,
	version    INT NOT NULL,
	name       TEXT NOT NULL,
	applied_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
	PRIMARY KEY (table_name, version)
)`

// lockTimeout bounds the wait for another instance's migration (and for
// the table locks a migration's DDL takes).
const lockTimeout = "30s"

// Migrate implements outbox.Store. Concurrent starters are serialised by
// an advisory lock per table, so a fleet can start at once. A database
// migrated already needs no DDL, so an application role without the
// CREATE privilege can start once the tables exist.
func (s *Store) Migrate(ctx context.Context) error {
	if err := createShared(ctx, s.db, versionTable, subscriptionsTable, redeliveriesTable); err != nil {
		return err
	}
	return migrate(ctx, s.db, s.t, migrations)
}

// sharedDDL creates each table shared by every service.
var sharedDDL = map[string]string{
	versionTable:       createVersionTable,
	subscriptionsTable: createSubscriptions,
	redeliveriesTable:  createRedeliveries,
}

// createShared creates those of the shared tables (quoted names) that do
// not exist yet, under one advisory lock for all.
func createShared(ctx context.Context, db *sql.DB, tables ...string) error {
	missing, err := missingTables(ctx, db, tables)
	if err != nil || len(missing) == 0 {
		return err
	}
	return locked(ctx, db, sharedLock, func(tx *sql.Tx) error {
		for _, table := range missing {
			if _, err := tx.ExecContext(ctx, sharedDDL[table]); err != nil {
				return fmt.Errorf("outbox/postgres: create %s: %w", table, err)
			}
		}
		return nil
	})
}

// missingTables returns those of tables (quoted names) that do not exist.
func missingTables(ctx context.Context, db *sql.DB, tables []string) ([]string, error) {
	var missing []string
	for _, table := range tables {
		var exists bool
		if err := db.QueryRowContext(ctx, `SELECT to_regclass($1) IS NOT NULL`, table).Scan(&exists); err != nil {
			return nil, fmt.Errorf("outbox/postgres: migrate: %w", err)
		}
		if !exists {
			missing = append(missing, table)
		}
	}
	return missing, nil
}

// locked runs fn in a READ COMMITTED transaction holding the advisory
// lock of name, and commits. The lock is a transaction lock: it goes with
// the transaction's end, whatever ends it, so no failure path can leave
// it taken.
func locked(ctx context.Context, db *sql.DB, name string, fn func(tx *sql.Tx) error) error {
	// READ COMMITTED whatever the database's default, so that each
	// statement after the lock sees what the previous holder committed.
	tx, err := db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		return fmt.Errorf("outbox/postgres: migrate: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
	if _, err := tx.ExecContext(ctx, `SET LOCAL lock_timeout = '`+lockTimeout+`'`); err != nil {
		return fmt.Errorf("outbox/postgres: migrate: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, lockKey(name)); err != nil {
		return fmt.Errorf("outbox/postgres: migrate lock of %s (waited up to %s): %w", name, lockTimeout, err)
	}
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("outbox/postgres: migrate commit: %w", err)
	}
	return nil
}

// migrate brings t up to the last of steps, under t's migration lock, in
// one transaction.
func migrate(ctx context.Context, db *sql.DB, t table, steps []migration) error {
	return locked(ctx, db, t.name, func(tx *sql.Tx) error {
		// A table dropped by hand starts again from version 0.
		var exists bool
		if err := tx.QueryRowContext(ctx, `SELECT to_regclass($1) IS NOT NULL`, t.q).Scan(&exists); err != nil {
			return fmt.Errorf("outbox/postgres: migrate: %w", err)
		}
		if !exists {
			if _, err := tx.ExecContext(ctx, `DELETE FROM `+versionTable+` WHERE table_name = $1`, t.name); err != nil {
				return fmt.Errorf("outbox/postgres: migrate: %w", err)
			}
		}
		var current int
		if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM `+versionTable+` WHERE table_name = $1`,
			t.name).Scan(&current); err != nil {
			return fmt.Errorf("outbox/postgres: migrate: %w", err)
		}
		for _, m := range steps {
			if m.version <= current {
				continue
			}
			if err := m.apply(ctx, tx, t); err != nil {
				return fmt.Errorf("outbox/postgres: migration %d (%s) of %s: %w", m.version, m.name, t.name, err)
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO `+versionTable+` (table_name, version, name) VALUES ($1, $2, $3)`,
				t.name, m.version, m.name); err != nil {
				return fmt.Errorf("outbox/postgres: record migration %d: %w", m.version, err)
			}
		}
		return nil
	})
}
