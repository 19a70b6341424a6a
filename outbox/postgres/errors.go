package postgres

import (
	"errors"
	"fmt"
	"strings"

	"github.com/finalbus/final/outbox"
)

// wrapError wraps an error of the statement op, with outbox.ErrTransient
// when trying again may succeed.
func wrapError(op string, err error) error {
	if transient(err) {
		return fmt.Errorf("outbox/postgres: %s: %w: %w", op, outbox.ErrTransient, err)
	}
	return fmt.Errorf("outbox/postgres: %s: %w", op, err)
}

// sqlStater is an error of the server with its SQLSTATE: pgx's
// *pgconn.PgError and lib/pq's *pq.Error both have the method, so the
// store needs to import neither.
type sqlStater interface{ SQLState() string }

// sqlState returns the SQLSTATE of the server's error in err's chain, ""
// for none.
func sqlState(err error) string {
	var se sqlStater
	if errors.As(err, &se) {
		return se.SQLState()
	}
	return ""
}

// transient reports errors that may go away on their own: the connection
// or the server went away (class 08, the server shutting down or not yet
// accepting connections, too many connections), a hot standby or a
// server in read-only mode refused the write during a failover, the
// statement lost a serialization conflict or a deadlock, waited too long
// for a lock, or was cancelled by a timeout.
func transient(err error) bool {
	if code := sqlState(err); code != "" {
		if strings.HasPrefix(code, "08") { // connection_exception
			return true
		}
		switch code {
		case "40001", // serialization_failure
			"40P01", // deadlock_detected
			"55P03", // lock_not_available (lock_timeout)
			"57014", // query_canceled (statement_timeout)
			"57P01", // admin_shutdown (pg_terminate_backend, shutdown)
			"57P02", // crash_shutdown
			"57P03", // cannot_connect_now (starting up, recovery)
			"53300", // too_many_connections
			"25006": // read_only_sql_transaction (a standby, or default_transaction_read_only)
			return true
		}
		return false
	}
	return outbox.ConnectionFailed(err)
}

// retryable reports the errors after which the claim, which changes
// nothing until it commits, is simply tried again.
func retryable(err error) bool {
	switch sqlState(err) {
	case "40001", "40P01":
		return true
	}
	return false
}
