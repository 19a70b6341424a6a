// Package testenv connects tests to the real MariaDB and RabbitMQ. When a
// service cannot be reached the test is skipped, except under CI=true,
// where it fails: CI never passes by skipping.
package testenv

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql" // the driver under test
	amqp "github.com/rabbitmq/amqp091-go"
)

// MySQLDSN is FINAL_TEST_MYSQL_DSN or the local MariaDB's test database.
func MySQLDSN() string {
	if v := os.Getenv("FINAL_TEST_MYSQL_DSN"); v != "" {
		return v
	}
	return "root@tcp(127.0.0.1:3306)/test"
}

// AMQPURL is FINAL_TEST_AMQP_URL or the local RabbitMQ.
func AMQPURL() string {
	if v := os.Getenv("FINAL_TEST_AMQP_URL"); v != "" {
		return v
	}
	return "amqp://guest:guest@127.0.0.1:5672/"
}

// Unavailable fails the test under CI=true and skips it otherwise.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		t.Fatalf("required service unavailable under CI=true: %s", msg)
	}
	t.Skipf("service unavailable: %s", msg)
}

// DB opens the test database; it is closed at the end of the test.
func DB(t testing.TB) *sql.DB {
	t.Helper()
	db, err := sql.Open("mysql", MySQLDSN())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		Unavailable(t, "MariaDB at %s: %v", MySQLDSN(), err)
	}
	db.SetMaxOpenConns(32)
	db.SetMaxIdleConns(32)
	t.Cleanup(func() { db.Close() })
	return db
}

// AMQP checks that RabbitMQ answers and returns its URL.
func AMQP(t testing.TB) string {
	t.Helper()
	conn, err := amqp.DialConfig(AMQPURL(), amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
	if err != nil {
		Unavailable(t, "RabbitMQ at %s: %v", AMQPURL(), err)
	}
	conn.Close()
	return AMQPURL()
}

// Service returns a fresh service name for t, and removes its outbox table
// and queues when the test ends.
func Service(t testing.TB, db *sql.DB) string {
	t.Helper()
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := "t" + hex.EncodeToString(b[:])
	t.Cleanup(func() { DropService(t, db, name) })
	return name
}

// DropService removes what a bus for svc left behind.
func DropService(t testing.TB, db *sql.DB, svc string) {
	if db != nil {
		table := "final_" + svc + "_outbox"
		_, _ = db.Exec("DROP TABLE IF EXISTS `" + table + "`")
		_, _ = db.Exec("DELETE FROM `final_schema_migrations` WHERE table_name = ?", table)
		_, _ = db.Exec("DELETE FROM `final_topology` WHERE outbox_table = ?", table)
		_, _ = db.Exec("DELETE FROM `final_redeliveries` WHERE outbox_table = ?", table)
	}
	deleteQueues("final."+svc, "final."+svc+".dlq")
}

// DropQueues deletes queues when t ends: durable queues outlive the test
// that declared them (mq/amqp.Queues names a service's).
func DropQueues(t testing.TB, names ...string) {
	t.Cleanup(func() { deleteQueues(names...) })
}

// deleteQueues deletes queues, as far as the broker can be reached.
func deleteQueues(names ...string) {
	conn, err := amqp.Dial(AMQPURL())
	if err != nil {
		return
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return
	}
	for _, q := range names {
		_, _ = ch.QueueDelete(q, false, false, false)
	}
}

// Eventually polls cond every 10ms until it holds or timeout passes.
func Eventually(t testing.TB, timeout time.Duration, cond func() bool, format string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s: %s", timeout, fmt.Sprintf(format, args...))
		}
		time.Sleep(10 * time.Millisecond) // polling interval, not synchronisation
	}
}

// Hostport returns the host:port of an amqp URL.
func Hostport(url string) string {
	s := url[strings.Index(url, "@")+1:]
	if i := strings.Index(s, "/"); i >= 0 {
		s = s[:i]
	}
	return s
}
