package mysql

import (
	"database/sql"

	"github.com/finalbus/final/outbox"
)

// Dialect is the outbox.Dialect of MariaDB and MySQL. The bus picks it for
// github.com/go-sql-driver/mysql; set it in the bus's options for a driver
// that wraps that one.
var Dialect outbox.Dialect = dialect{}

type dialect struct{}

func (dialect) Name() string { return "mysql" }

func (dialect) NewStore(db *sql.DB, table string, o outbox.StoreOptions) (outbox.Store, error) {
	return New(db, table, o)
}

func (dialect) NewInbox(db *sql.DB, table string) (outbox.Inbox, error) {
	return NewInbox(db, table)
}
