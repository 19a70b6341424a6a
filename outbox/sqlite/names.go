package sqlite

import (
	"fmt"
	"strings"

	"github.com/finalbus/final/outbox"
)

// maxIdentifierLen bounds table names. SQLite itself sets no limit; 128
// takes every name MySQL (64) and PostgreSQL (63) take, so a service keeps
// its table name when it moves between databases, and leaves room for the
// index names built from it.
const maxIdentifierLen = 128

// table is a validated table name and its quoted form.
type table struct {
	name string // validated, unquoted
	q    string // quoted
}

// newTable validates name as a table name: outbox.ValidateIdentifier within
// maxIdentifierLen, and not in the "sqlite_" namespace SQLite keeps for
// itself. It fails with outbox.ErrInvalidIdentifier. Such a name is safe
// inside double quotes.
func newTable(name string) (table, error) {
	if err := outbox.ValidateIdentifier(name, maxIdentifierLen); err != nil {
		return table{}, err
	}
	if strings.HasPrefix(strings.ToLower(name), "sqlite_") {
		return table{}, fmt.Errorf("%w: %q (names beginning with sqlite_ are SQLite's own)", outbox.ErrInvalidIdentifier, name)
	}
	return table{name: name, q: quote(name)}, nil
}

// index returns the quoted name of the table's index called suffix. Index
// names are one namespace for the whole database in SQLite, so each
// carries its table's name.
func (t table) index(suffix string) string { return quote(t.name + "_" + suffix) }

// quote quotes a validated identifier, which holds no double quote.
func quote(name string) string { return `"` + name + `"` }
