package sqlite

import (
	"database/sql"

	"github.com/finalbus/final/outbox"
)

// Dialect is the outbox.Dialect of SQLite. The bus picks it for
// modernc.org/sqlite and github.com/ncruces/go-sqlite3; set it in the
// bus's options for a driver that wraps one of those.
var Dialect outbox.Dialect = dialect{}

type dialect struct{}

func (dialect) Name() string { return "sqlite" }

func (dialect) NewStore(db *sql.DB, table string, o outbox.StoreOptions) (outbox.Store, error) {
	return New(db, table, o)
}

func (dialect) NewInbox(db *sql.DB, table string) (outbox.Inbox, error) {
	return NewInbox(db, table)
}
