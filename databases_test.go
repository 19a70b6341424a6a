package final_test

import (
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	_ "modernc.org/sqlite" // the pure-Go SQLite driver under test

	"github.com/finalbus/final"
	"github.com/finalbus/final/internal/testenv"
	"github.com/finalbus/final/message"
	"github.com/finalbus/final/mq"
	"github.com/finalbus/final/mq/amqp"
	"github.com/finalbus/final/outbox/sqlite"
)

// The bus on PostgreSQL, with its dialect recognised from the pgx driver.
func TestBusOnPostgres(t *testing.T) {
	e := newEnvOn(t, postgresDB)
	busRoundTrip(t, e.db, e.svc, "$1")
}

// The bus on an SQLite file, with its dialect recognised from the
// modernc.org/sqlite driver.
func TestBusOnSQLite(t *testing.T) {
	e := newEnvOn(t, sqliteDB(filepath.Join(t.TempDir(), "app.db")))
	busRoundTrip(t, e.db, e.svc, "?")
}

// busRoundTrip runs a bus of svc on db, whose placeholder is ph: a
// transaction's message is delivered if and only if it commits, the outbox
// empties, and an Inbox handler's write happens once although its message
// comes twice, in the handler's transaction.
func busRoundTrip(t *testing.T, db *sql.DB, svc, ph string) {
	url := testenv.AMQP(t)
	testenv.DropQueues(t, amqp.Queues(mq.Config{Service: svc})...)
	biz, credits := `"biz_`+svc+`"`, `"credits_`+svc+`"` // credits: no unique key, only the inbox keeps a duplicate out
	_, err := db.Exec(`CREATE TABLE ` + biz + ` (ref TEXT PRIMARY KEY)`)
	require.NoError(t, err)
	_, err = db.Exec(`CREATE TABLE ` + credits + ` (ref TEXT NOT NULL)`)
	require.NoError(t, err)
	t.Cleanup(func() {
		_, _ = db.Exec(`DROP TABLE IF EXISTS ` + biz)
		_, _ = db.Exec(`DROP TABLE IF EXISTS ` + credits)
	})

	topic, credited := svc+".created", svc+".credited"
	rec := newRecorder()
	var inboxCalls atomic.Int64
	// One worker: the service queue is handled in order, so the message
	// after the duplicate is handled after it.
	b := final.New(svc, db, amqp.NewProvider(url), testOptions(t).WithNumSubscriber(1))
	b.Subscribe(topic).Handler(rec.handle)
	b.Subscribe(credited).Inbox().Handler(func(c *final.Context) error {
		inboxCalls.Add(1)
		_, err := c.Tx().Exec(`INSERT INTO `+credits+` (ref) VALUES (`+ph+`)`, string(c.Message.Payload))
		return err
	})
	require.NoError(t, b.Start())
	t.Cleanup(func() { require.NoError(t, b.Shutdown()) })

	var committed []string
	for i := 0; i < 20; i++ {
		for _, fail := range []error{nil, errors.New("rolled back")} {
			ref := fmt.Sprintf("r%d-%v", i, fail == nil)
			tx, err := db.Begin()
			require.NoError(t, err)
			err = b.Transaction(tx, func(txBus *final.TxBus) error {
				if _, err := tx.Exec(`INSERT INTO `+biz+` (ref) VALUES (`+ph+`)`, ref); err != nil {
					return err
				}
				if err := txBus.Publish(topic, []byte(ref)); err != nil {
					return err
				}
				return fail
			})
			if fail == nil {
				require.NoError(t, err)
				committed = append(committed, ref)
			} else {
				require.ErrorIs(t, err, fail)
			}
		}
	}
	rec.waitAll(t, committed, 30*time.Second)
	var rows int
	testenv.Eventually(t, 20*time.Second, func() bool {
		require.NoError(t, db.QueryRow(`SELECT COUNT(*) FROM "final_`+svc+`_outbox"`).Scan(&rows))
		return rows == 0
	}, "outbox empty")
	got := rec.tally(committed)
	t.Logf("%s: %s outbox_left=%d", t.Name(), got, rows)
	require.Zero(t, got.lost)
	require.Zero(t, got.phantom)

	m := message.New(credited, []byte("once"))
	require.NoError(t, b.PublishMessage(m))
	dup := message.New(credited, []byte("once"))
	dup.UUID = m.UUID
	require.NoError(t, b.PublishMessage(dup))
	require.NoError(t, b.Publish(credited, []byte("after"))) // handled after the duplicate
	count := func(ref string) int {
		var n int
		require.NoError(t, db.QueryRow(`SELECT COUNT(*) FROM `+credits+` WHERE ref = `+ph, ref).Scan(&n))
		return n
	}
	testenv.Eventually(t, 20*time.Second, func() bool { return count("after") == 1 }, "the message after the duplicate handled")
	require.Equal(t, 1, count("once"), "the duplicate was acknowledged without a second write")
	require.Equal(t, int64(2), inboxCalls.Load())
}

// A database the behaviour tests run on: how to open it (the kill test's
// producer process opens the same) and the little SQL that differs.
type database struct {
	name        string // the subtest's name
	driver, dsn string // what sql.Open takes
	autoID      string // an auto-increment primary key column
	now         string // the current time, as the outbox's available_at
	dollar      bool   // placeholders are $1, $2, … instead of ?
	backquote   bool   // identifiers are quoted with ` instead of "
}

var mariaDB = database{name: "mariadb", driver: "mysql", dsn: testenv.MySQLDSN(),
	autoID: "BIGINT AUTO_INCREMENT PRIMARY KEY", now: "NOW(6)", backquote: true}

var postgresDB = database{name: "postgres", driver: "pgx", dsn: testenv.PostgresDSN(),
	autoID: "BIGSERIAL PRIMARY KEY", now: "clock_timestamp()", dollar: true}

// sqliteDB is a database file at path, opened as the SQLite store asks,
// with transactions that take the write lock when they begin.
func sqliteDB(path string) database {
	return database{name: "sqlite", driver: "sqlite", dsn: "file:" + path + "?" + sqlite.DSNParams + "&_txlock=immediate",
		autoID: "INTEGER PRIMARY KEY AUTOINCREMENT", now: "CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER)"}
}

// embeddedDB is package embedded's pair: an SQLite file and an in-process
// NATS server (see newEnvOn). It needs nothing installed, so these tests
// run on any machine.
var embeddedDB = database{name: "embedded", driver: "sqlite",
	autoID: "INTEGER PRIMARY KEY AUTOINCREMENT", now: "CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER)"}

// databaseNamed is the database of a name and DSN, for a producer process.
func databaseNamed(name, dsn string) (database, error) {
	for _, d := range []database{mariaDB, postgresDB, sqliteDB("")} {
		if d.name == name {
			d.dsn = dsn
			return d, nil
		}
	}
	return database{}, fmt.Errorf("no test database named %q", name)
}

// forEachDB runs test as a subtest on MariaDB, PostgreSQL and an SQLite
// file, each with RabbitMQ, and on the embedded pair (an SQLite file and an
// in-process NATS server), each with an env of its own.
func forEachDB(t *testing.T, test func(t *testing.T, e *env)) {
	eachDatabase(t, func(t *testing.T, d database) { test(t, newEnvOn(t, d)) })
	t.Run(embeddedDB.name, func(t *testing.T) { test(t, newEnvOn(t, embeddedDB)) })
}

// forEachServerDB is forEachDB without the embedded pair, for tests that
// need a broker other processes reach.
func forEachServerDB(t *testing.T, test func(t *testing.T, e *env)) {
	eachDatabase(t, func(t *testing.T, d database) { test(t, newEnvOn(t, d)) })
}

// eachDatabase runs test as a subtest on MariaDB, PostgreSQL and an SQLite
// file.
func eachDatabase(t *testing.T, test func(t *testing.T, d database)) {
	path := filepath.Join(t.TempDir(), "app.db")
	for _, d := range []database{mariaDB, postgresDB, sqliteDB(path)} {
		t.Run(d.name, func(t *testing.T) { test(t, d) })
	}
}

// open opens d, closed when t ends; a server that does not answer skips t
// (fails it under CI=true).
func (d database) open(t *testing.T) *sql.DB {
	t.Helper()
	switch d.name {
	case mariaDB.name:
		return testenv.DB(t)
	case postgresDB.name:
		return testenv.Postgres(t)
	}
	db, err := sql.Open(d.driver, d.dsn)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	return db
}

// quote quotes an identifier the tests made up (no quote inside).
func (d database) quote(ident string) string {
	if d.backquote {
		return "`" + ident + "`"
	}
	return `"` + ident + `"`
}

// q rewrites the ? placeholders of query for d (the tests write no ? in a
// literal).
func (d database) q(query string) string {
	if !d.dollar {
		return query
	}
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			fmt.Fprintf(&b, "$%d", n)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// dropService removes svc's tables and its rows in the tables every
// service shares, when t ends. (testenv.DropService does it on MariaDB.)
func (d database) dropService(t *testing.T, db *sql.DB, svc string) {
	t.Cleanup(func() {
		for _, table := range []string{"final_" + svc + "_outbox", "final_" + svc + "_inbox"} {
			_, _ = db.Exec("DROP TABLE IF EXISTS " + d.quote(table))
			_, _ = db.Exec(d.q("DELETE FROM final_schema_migrations WHERE table_name = ?"), table)
			_, _ = db.Exec(d.q("DELETE FROM final_topology WHERE outbox_table = ?"), table)
			_, _ = db.Exec(d.q("DELETE FROM final_redeliveries WHERE outbox_table = ?"), table)
		}
	})
}

// publishTx writes a business row and a message with the same ref in one
// transaction, through Bus.Transaction; fail makes fn return an error.
func (d database) publishTx(b *final.Bus, db *sql.DB, table, topic, ref string, fail error) error {
	tx, err := db.Begin()
	if err != nil {
		return err
	}
	return b.Transaction(tx, func(txBus *final.TxBus) error {
		if _, err := tx.Exec(d.q("INSERT INTO "+d.quote(table)+" (ref) VALUES (?)"), ref); err != nil {
			return err
		}
		if err := txBus.Publish(topic, []byte(ref)); err != nil {
			return err
		}
		return fail
	})
}

// publishPackTx writes a business row for each of refs and a message with
// the same ref in one transaction, the messages with one PublishMessages:
// a pack (Options.PackMessages).
func (d database) publishPackTx(b *final.Bus, db *sql.DB, table, topic string, refs []string) error {
	tx, err := db.Begin()
	if err != nil {
		return err
	}
	return b.Transaction(tx, func(txBus *final.TxBus) error {
		msgs := make([]*message.Message, len(refs))
		for i, ref := range refs {
			if _, err := tx.Exec(d.q("INSERT INTO "+d.quote(table)+" (ref) VALUES (?)"), ref); err != nil {
				return err
			}
			msgs[i] = message.New(topic, []byte(ref))
		}
		return txBus.PublishMessages(msgs...)
	})
}
