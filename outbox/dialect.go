package outbox

import (
	"database/sql"
	"time"
)

// Dialect makes the stores of one SQL database: each store package exports
// one (outbox/mysql.Dialect). The bus picks it from the *sql.DB's driver, or
// takes the one set in its options for a driver it does not recognise (a
// wrapping driver such as otelsql).
type Dialect interface {
	// Name names the database: "mysql".
	Name() string
	// NewStore returns the outbox store in table.
	NewStore(db *sql.DB, table string, opts StoreOptions) (Store, error)
	// NewInbox returns the inbox in table.
	NewInbox(db *sql.DB, table string) (Inbox, error)
}

// StoreOptions are what every outbox store is configured with.
type StoreOptions struct {
	// RetryBase is the backoff after a row's first failed publish; it
	// doubles with each further failure up to RetryMax.
	RetryBase time.Duration
	RetryMax  time.Duration
}
