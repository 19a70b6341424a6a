package postgres

import (
	"database/sql"

	"github.com/finalbus/final/outbox"
)

// Dialect is the outbox.Dialect of PostgreSQL. The bus picks it for
// github.com/jackc/pgx/v5/stdlib and github.com/lib/pq; set it in the
// bus's options for a driver that wraps one of them.
var Dialect outbox.Dialect = dialect{}

type dialect struct{}

func (dialect) Name() string { return "postgres" }

func (dialect) NewStore(db *sql.DB, table string, o outbox.StoreOptions) (outbox.Store, error) {
	return New(db, table, o)
}

func (dialect) NewInbox(db *sql.DB, table string) (outbox.Inbox, error) {
	return NewInbox(db, table)
}
