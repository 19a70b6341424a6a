// Package dialects recognises the SQL database behind a *sql.DB from its
// driver, so that final.New keeps working with nothing but a *sql.DB. It is
// the one place that lists the store packages; the bus itself speaks only
// outbox.Dialect. Drivers are recognised by the package of their type, so
// no driver is imported here.
package dialects

import (
	"database/sql"
	"errors"
	"fmt"
	"reflect"

	"github.com/finalbus/final/outbox"
	"github.com/finalbus/final/outbox/mysql"
	"github.com/finalbus/final/outbox/postgres"
	"github.com/finalbus/final/outbox/sqlite"
)

// ErrUnknown: the driver is not one of the known ones.
var ErrUnknown = errors.New("unknown database driver")

// byDriver maps the package of a database/sql driver's type to its dialect.
var byDriver = map[string]outbox.Dialect{
	"github.com/go-sql-driver/mysql":       mysql.Dialect,
	"github.com/jackc/pgx/v5/stdlib":       postgres.Dialect,
	"github.com/lib/pq":                    postgres.Dialect,
	"modernc.org/sqlite":                   sqlite.Dialect,
	"github.com/ncruces/go-sqlite3/driver": sqlite.Dialect,
}

// For returns the dialect of db's driver, or an error wrapping ErrUnknown
// that names the driver.
func For(db *sql.DB) (outbox.Dialect, error) {
	pkg := DriverPackage(db)
	if d, ok := byDriver[pkg]; ok {
		return d, nil
	}
	return nil, fmt.Errorf("%w: %T (package %q)", ErrUnknown, db.Driver(), pkg)
}

// DriverPackage is the import path of the package that defines db's driver
// type.
func DriverPackage(db *sql.DB) string {
	t := reflect.TypeOf(db.Driver())
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil {
		return ""
	}
	return t.PkgPath()
}
