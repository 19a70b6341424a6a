package outbox

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"strings"
	"unicode/utf8"
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

// MaxErrorLen bounds the failure cause a store keeps with a row
// (last_error), in bytes.
const MaxErrorLen = 1024

// ErrorText is cause as a store keeps it in last_error: valid UTF-8 (a
// cause quoting a broker's bytes may not be, and a server checking its
// text would refuse the statement, and with it a held claim's deletes),
// without NUL, at most MaxErrorLen bytes cut at a character.
func ErrorText(cause string) string {
	cause = strings.ToValidUTF8(strings.ReplaceAll(cause, "\x00", ""), "\uFFFD")
	if len(cause) <= MaxErrorLen {
		return cause
	}
	cut := MaxErrorLen
	for cut > 0 && !utf8.RuneStart(cause[cut]) {
		cut--
	}
	return cause[:cut]
}
