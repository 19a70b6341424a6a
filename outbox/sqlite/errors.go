package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"reflect"

	"github.com/finalbus/final/outbox"
)

// ErrSetup is wrapped by the error of Migrate when the database is not set
// up for several connections writing to it: not in WAL mode, or without a
// busy timeout. The error says what to add to the DSN.
var ErrSetup = errors.New("outbox/sqlite: database not set up for concurrent writers")

// ErrVersion is wrapped by the error of Migrate when the SQLite library is
// older than 3.35.0, the first with RETURNING.
var ErrVersion = errors.New("outbox/sqlite: SQLite version too old")

// SQLite's primary result codes that may go away when the call is made
// again (https://sqlite.org/rescode.html).
const (
	codeBusy   = 5 // SQLITE_BUSY: another connection held the lock past the busy timeout
	codeLocked = 6 // SQLITE_LOCKED: a conflict inside one connection or shared cache
)

// wrapError wraps an error of the statement op, with outbox.ErrTransient
// when trying again may succeed.
func wrapError(op string, err error) error {
	if transient(err) {
		return fmt.Errorf("outbox/sqlite: %s: %w: %w", op, outbox.ErrTransient, err)
	}
	return fmt.Errorf("outbox/sqlite: %s: %w", op, err)
}

// transient reports errors that may go away on their own: the database
// was locked longer than the busy timeout, the connection went bad, or the
// call ran out of time.
func transient(err error) bool {
	if code, ok := resultCode(err); ok && (code == codeBusy || code == codeLocked) {
		return true
	}
	return errors.Is(err, driver.ErrBadConn) || errors.Is(err, sql.ErrConnDone) ||
		errors.Is(err, context.DeadlineExceeded)
}

// resultCode returns the primary SQLite result code that err carries.
//
// Both drivers' errors have a Code method, of different types:
// modernc.org/sqlite's *sqlite.Error.Code() int is the extended code,
// github.com/ncruces/go-sqlite3's *sqlite3.Error.Code() ErrorCode (a uint8)
// the primary one. The method is found by reflection so that this package
// imports neither driver: a program links only the one it opens. The
// primary code is the extended code's low byte.
func resultCode(err error) (int, bool) {
	for _, e := range chain(err) {
		m := reflect.ValueOf(e).MethodByName("Code")
		if !m.IsValid() || m.Type().NumIn() != 0 || m.Type().NumOut() != 1 {
			continue
		}
		switch v := m.Call(nil)[0]; v.Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			return int(v.Int() & 0xff), true
		case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			return int(v.Uint() & 0xff), true
		}
	}
	return 0, false
}

// chain returns err and the errors it wraps, depth first.
func chain(err error) []error {
	var out []error
	var walk func(error)
	walk = func(e error) {
		for e != nil {
			out = append(out, e)
			switch u := e.(type) {
			case interface{ Unwrap() []error }:
				for _, inner := range u.Unwrap() {
					walk(inner)
				}
				return
			case interface{ Unwrap() error }:
				e = u.Unwrap()
			default:
				return
			}
		}
	}
	walk(err)
	return out
}
