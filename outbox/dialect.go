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

// StoreOptions are what every outbox store is configured with; each store
// package names them Options.
type StoreOptions struct {
	// RetryBase is the backoff after a row's first failed publish; it
	// doubles with each further failure. Default 100ms.
	RetryBase time.Duration
	// RetryMax caps the backoff. Default 5s.
	RetryMax time.Duration
}

// WithDefaults returns o with the defaults in place of zero or negative
// values.
func (o StoreOptions) WithDefaults() StoreOptions {
	if o.RetryBase <= 0 {
		o.RetryBase = 100 * time.Millisecond
	}
	if o.RetryMax <= 0 {
		o.RetryMax = 5 * time.Second
	}
	return o
}
