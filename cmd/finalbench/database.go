package main

import (
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	_ "github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite"

	"github.com/finalbus/final/outbox"
	"github.com/finalbus/final/outbox/mysql"
	"github.com/finalbus/final/outbox/postgres"
	"github.com/finalbus/final/outbox/sqlite"
)

// database is the SQL that differs between the databases finalbench runs
// on, so that every phase does the same work on each: the business table
// and its insert, and the raw insert into a table of the outbox's shape
// written as that database's store writes its rows (the store itself
// creates that table). The library finds the database from the driver.
type database struct {
	name   string         // the -db value
	driver string         // the database/sql driver
	envDSN string         // the environment variable that overrides defaultDSN
	store  outbox.Dialect // creates the raw table, of the outbox's shape
	quote  func(name string) string
	ph     func(n int) string // the nth placeholder, from 1
	// bizDDL creates the business table (quoted name) with an id of the
	// database's own kind; bizNow is its insert's current time.
	bizDDL, bizNow string
	// rawCols are the columns of the raw insert of (message, create_at,
	// available_at), as the store writes it; rawRow is one row of its
	// VALUES, whose placeholders are numbered from first, and rawArgs are
	// that row's arguments for a row available after in. With returning,
	// the insert of one row returns the new id, as the store's does (the
	// others return it in the result).
	rawCols   string
	rawRow    func(first int) string
	rawArgs   func(body []byte, in time.Duration) []any
	returning bool
	// multiRow: the store writes a transaction's rows in one INSERT …
	// RETURNING (outbox.BatchInserter), so with -batch the raw limit does
	// too. MySQL's store does not (no RETURNING): multiRowOK says whether
	// the server at hand is one where it does.
	multiRow   bool
	multiRowOK func(version string) bool
	// truncate empties a table (quoted name).
	truncate string
	// missing is part of the error of a statement on a table that does not
	// exist.
	missing string
	// version is the query of the server's version, shown after
	// versionPrefix.
	version, versionPrefix string
	// cache is the query of the server's own cache of table pages, shown
	// after the version: a backlog larger than InnoDB's buffer pool is
	// read from disk as it drains (empty: not shown).
	cache string
	// settle brings the database to rest after what earlier phases did
	// to tables (quoted names), waiting up to a minute.
	settle func(db *sql.DB, tables []string)
}

var databases = map[string]database{
	"mysql": {
		name: "mysql", driver: "mysql", envDSN: "FINAL_MYSQL_DSN", store: mysql.Dialect,
		quote:  func(n string) string { return "`" + n + "`" },
		ph:     func(int) string { return "?" },
		bizDDL: "CREATE TABLE %s (id BIGINT AUTO_INCREMENT PRIMARY KEY, ref BIGINT NOT NULL, amount INT NOT NULL, created_at DATETIME(3) NOT NULL)",
		bizNow: "NOW(3)",
		// The store's status column, kept for the ancestor's schema, is
		// written too.
		rawCols:    "(message, status, create_at, available_at)",
		rawRow:     func(int) string { return "(?, 0, NOW(3), NOW(6) + INTERVAL ? MICROSECOND)" },
		rawArgs:    func(body []byte, in time.Duration) []any { return []any{body, in.Microseconds()} },
		multiRow:   true,
		multiRowOK: func(version string) bool { return strings.Contains(version, "MariaDB") },
		truncate:   "TRUNCATE TABLE %s",
		missing:    "doesn't exist",
		version:    "SELECT VERSION()",
		cache:      "SELECT CONCAT(@@innodb_buffer_pool_size DIV 1048576, ' MiB buffer pool')",
		settle:     innodbPurged,
	},
	"postgres": {
		name: "postgres", driver: "pgx", envDSN: "FINAL_POSTGRES_DSN", store: postgres.Dialect,
		quote:  func(n string) string { return `"` + n + `"` },
		ph:     func(n int) string { return fmt.Sprintf("$%d", n) },
		bizDDL: "CREATE TABLE %s (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, ref BIGINT NOT NULL, amount INT NOT NULL, created_at TIMESTAMPTZ(3) NOT NULL)",
		bizNow: "now()",
		// create_at takes its default, clock_timestamp(), as in the store.
		rawCols: "(message, available_at)",
		rawRow: func(first int) string {
			return fmt.Sprintf("($%d, clock_timestamp() + ($%d::bigint * interval '1 microsecond'))", first, first+1)
		},
		rawArgs:       func(body []byte, in time.Duration) []any { return []any{body, in.Microseconds()} },
		returning:     true,
		multiRow:      true,
		truncate:      "TRUNCATE TABLE %s",
		missing:       "does not exist",
		version:       "SHOW server_version",
		versionPrefix: "PostgreSQL ",
		cache:         "SELECT current_setting('shared_buffers') || ' shared_buffers'",
		settle:        vacuumed,
	},
	"sqlite": {
		name: "sqlite", driver: "sqlite", store: sqlite.Dialect,
		quote:  func(n string) string { return `"` + n + `"` },
		ph:     func(int) string { return "?" },
		bizDDL: "CREATE TABLE %s (id INTEGER PRIMARY KEY, ref INTEGER NOT NULL, amount INTEGER NOT NULL, created_at TEXT NOT NULL)",
		bizNow: "strftime('%Y-%m-%d %H:%M:%f', 'now')",
		// Times are unix microseconds from the process's clock, as in the
		// store.
		rawCols: "(message, create_at, available_at)",
		rawRow:  func(int) string { return "(?, ?, ?)" },
		rawArgs: func(body []byte, in time.Duration) []any {
			now := time.Now().UnixMicro()
			return []any{body, now, now + in.Microseconds()}
		},
		truncate:      "DELETE FROM %s",
		missing:       "no such table",
		version:       "SELECT sqlite_version()",
		versionPrefix: "SQLite ",
		settle:        walCheckpointed,
	},
}

// dsn is the DSN of the database given by the flag, else by the
// environment, else the local default. For SQLite the default is a file
// in a new directory under os.TempDir, returned as tmp for the caller to
// remove.
func (d database) dsn(flagDSN string) (dsn, tmp string, err error) {
	if flagDSN != "" {
		return flagDSN, "", nil
	}
	if v := os.Getenv(d.envDSN); d.envDSN != "" && v != "" {
		return v, "", nil
	}
	switch d.name {
	case "mysql":
		return "root@tcp(127.0.0.1:3306)/test", "", nil
	case "postgres":
		return "postgres://postgres@127.0.0.1:5432/test?sslmode=disable", "", nil
	}
	tmp, err = os.MkdirTemp("", "finalbench-")
	if err != nil {
		return "", "", err
	}
	// _txlock=immediate: every transaction takes the write lock at BEGIN,
	// as outbox/sqlite asks of modernc.org/sqlite.
	return "file:" + filepath.Join(tmp, "bench.db") + "?" + sqlite.DSNParams + "&_txlock=immediate", tmp, nil
}

// bizInsert is the business insert of (ref, amount).
func (d database) bizInsert() string {
	return "INSERT INTO " + d.quote(bizTable) + " (ref, amount, created_at) VALUES (" + d.ph(1) + ", " + d.ph(2) + ", " + d.bizNow + ")"
}

// rawInsert is the raw insert of one row into the table of the outbox's
// shape.
func (d database) rawInsert() string {
	q := "INSERT INTO " + d.quote(rawOutbox) + " " + d.rawCols + " VALUES " + d.rawRow(1)
	if d.returning {
		q += " RETURNING id"
	}
	return q
}

// rawInsertRows is the raw insert of n rows in one statement, returning
// their ids as the stores' multi-row inserts do.
func (d database) rawInsertRows(n int) string {
	var b strings.Builder
	b.WriteString("INSERT INTO " + d.quote(rawOutbox) + " " + d.rawCols + " VALUES ")
	args := len(d.rawArgs(nil, 0))
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(d.rawRow(1 + i*args))
	}
	b.WriteString(" RETURNING id")
	return b.String()
}

// empty empties table.
func (d database) empty(db *sql.DB, table string) {
	_, _ = db.Exec(fmt.Sprintf(d.truncate, d.quote(table)))
}

// label names the database in the chart, from the version in results.json
// (whose files from before -db existed all ran on MariaDB or MySQL).
func label(version string) string {
	for _, name := range []string{"MariaDB", "PostgreSQL", "SQLite"} {
		if strings.Contains(version, name) {
			return name
		}
	}
	return "MySQL"
}

// innodbPurged waits for InnoDB to purge what earlier phases deleted.
func innodbPurged(db *sql.DB, _ []string) {
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		var n int64
		err := db.QueryRow("SELECT COUNT FROM information_schema.INNODB_METRICS WHERE NAME = 'trx_rseg_history_len'").Scan(&n)
		if err != nil || n < 1000 {
			return
		}
		time.Sleep(200 * time.Millisecond) // polling interval
	}
}

// vacuumed vacuums the tables that earlier phases filled and emptied, so
// that autovacuum does not do it during a later phase: PostgreSQL's
// counterpart of waiting for InnoDB's purge.
func vacuumed(db *sql.DB, tables []string) {
	for _, t := range tables {
		_, _ = db.Exec("VACUUM " + t)
	}
}

// walCheckpointed copies the write-ahead log into the database file and
// empties it, so that a phase does not pay for its predecessors'
// checkpoints.
func walCheckpointed(db *sql.DB, _ []string) {
	_, _ = db.Exec("PRAGMA wal_checkpoint(TRUNCATE)")
}
