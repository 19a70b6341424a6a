package mysql

import (
	"errors"
	"fmt"

	gomysql "github.com/go-sql-driver/mysql"

	"github.com/finalbus/final/outbox"
)

// wrapError wraps an error of the statement op, with outbox.ErrTransient
// when trying again may succeed.
func wrapError(op string, err error) error {
	if transient(err) {
		return fmt.Errorf("outbox/mysql: %s: %w: %w", op, outbox.ErrTransient, err)
	}
	return fmt.Errorf("outbox/mysql: %s: %w", op, err)
}

// transient reports errors that may go away on their own: the connection
// or the server went away, the server refuses writes for a while (too
// many connections, shutting down, read-only during a failover), InnoDB
// chose the statement as a deadlock victim or it waited too long for a
// lock, or it was interrupted or ran out of time.
func transient(err error) bool {
	var me *gomysql.MySQLError
	if errors.As(err, &me) {
		switch me.Number {
		case 1040, // ER_CON_COUNT_ERROR: too many connections
			1053, // ER_SERVER_SHUTDOWN
			1205, // ER_LOCK_WAIT_TIMEOUT
			1213, // ER_LOCK_DEADLOCK
			1290, // ER_OPTION_PREVENTS_STATEMENT: --read-only
			1317, // ER_QUERY_INTERRUPTED
			1836, // ER_READ_ONLY_MODE (MariaDB)
			1927, // ER_CONNECTION_KILLED (MariaDB)
			3024, // ER_QUERY_TIMEOUT (MySQL)
			4031: // ER_CLIENT_INTERACTION_TIMEOUT (MySQL): wait_timeout passed, as a held claim's idle bound does
			return true
		}
		return false
	}
	return errors.Is(err, gomysql.ErrInvalidConn) || outbox.ConnectionFailed(err)
}

// retryable reports InnoDB's deadlock and lock wait timeout errors.
func retryable(err error) bool {
	var me *gomysql.MySQLError
	return errors.As(err, &me) && (me.Number == 1213 || me.Number == 1205)
}
