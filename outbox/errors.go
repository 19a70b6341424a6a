package outbox

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"net"
)

// ConnectionFailed reports the errors of a call whose connection failed
// (database/sql's bad or done connection, a network error, the server
// closing the stream) or that ran out of time: what a store classifies
// as ErrTransient whatever its server said, and what the bus tries again
// when a transaction it began itself could not begin or commit.
func ConnectionFailed(err error) bool {
	var netErr net.Error
	return errors.Is(err, driver.ErrBadConn) || errors.Is(err, sql.ErrConnDone) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, context.DeadlineExceeded) || errors.As(err, &netErr)
}
