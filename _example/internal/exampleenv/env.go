// Package exampleenv holds the connection settings the examples share.
package exampleenv

import (
	"database/sql"
	"log"
	"os"

	"github.com/go-sql-driver/mysql"
)

// DSN is FINAL_MYSQL_DSN or the local MariaDB's test database.
func DSN() string {
	if v := os.Getenv("FINAL_MYSQL_DSN"); v != "" {
		return v
	}
	return "root@tcp(127.0.0.1:3306)/test"
}

// AMQPURL is FINAL_AMQP_URL or the local RabbitMQ.
func AMQPURL() string {
	if v := os.Getenv("FINAL_AMQP_URL"); v != "" {
		return v
	}
	return "amqp://guest:guest@127.0.0.1:5672/"
}

// OpenDB opens and pings the database, or exits.
func OpenDB() *sql.DB {
	db, err := sql.Open("mysql", DSN())
	if err != nil {
		log.Fatal(err)
	}
	if err := db.Ping(); err != nil {
		log.Fatalf("database %s: %v", redactDSN(DSN()), err)
	}
	return db
}

// redactDSN is dsn with its password masked, for messages; a DSN that does
// not parse is not shown at all.
func redactDSN(dsn string) string {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return "(the DSN does not parse)"
	}
	if cfg.Passwd != "" {
		cfg.Passwd = "xxxxx"
	}
	return cfg.FormatDSN()
}
